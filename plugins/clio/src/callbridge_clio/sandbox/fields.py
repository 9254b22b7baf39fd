"""What the Clio sandbox knows of Clio's resources: their fields, the enums it checks,
the minor versions, and how the contact search matches text.

``KNOWN_FIELDS`` holds every property Clio's OpenAPI document (4.0.10) lists for the
resources the plugin uses; a test compares the two. A field the sandbox stores no
value for answers ``null``; a field outside the set is a 400, as in Clio.
"""

from __future__ import annotations

import re
from typing import Literal

KNOWN_FIELDS: dict[str, frozenset[str]] = {
    "contact": frozenset({
        "account_balances", "activity_rates", "addresses", "avatar", "client_connect_user_id",
        "clio_connect_email", "co_counsel_rate", "company", "created_at",
        "custom_field_set_associations", "custom_field_values", "date_of_birth",
        "email_addresses", "etag", "first_name", "folder", "has_clio_for_clients_permission",
        "id", "initials", "instant_messengers", "is_bill_recipient", "is_client",
        "is_clio_for_client_user", "is_co_counsel", "last_name", "ledes_client_id",
        "legal_aid_uk_contact", "locked_clio_connect_email", "middle_name", "name",
        "notification_methods", "payment_profile", "phone_numbers", "prefix", "primary_address",
        "primary_email_address", "primary_phone_number", "primary_web_site",
        "primary_work_address", "related_contacts", "sales_tax_number", "secondary_address",
        "secondary_email_address", "secondary_phone_number", "title", "type", "updated_at",
        "web_sites"}),
    "matter": frozenset({
        "account_balances", "billable", "billing_method", "client", "client_id",
        "client_reference", "close_date", "contingency_fee", "created_at",
        "custom_field_set_associations", "custom_field_values", "custom_number", "custom_rate",
        "description", "display_number", "etag", "evergreen_retainer", "folder", "group",
        "has_tasks", "id", "last_activity_date", "legal_aid_uk_matter", "location",
        "maildrop_address", "matter_bill_recipients", "matter_budget", "matter_stage",
        "matter_stage_updated_at", "number", "open_date", "originating_attorney",
        "pending_date", "practice_area", "relationships", "responsible_attorney", "shared",
        "status", "statute_of_limitations", "task_template_list_instances", "updated_at",
        "user"}),
    "relationship": frozenset({"contact", "created_at", "description", "etag", "id", "matter",
                               "updated_at"}),
    "user": frozenset({
        "account", "account_owner", "avatar", "clio_connect", "contact",
        "court_rules_default_attendee", "created_at", "default_activity_description",
        "default_calendar_id", "email", "enabled", "etag", "first_name", "groups", "id",
        "initials", "job_title", "last_name", "name", "notification_methods", "phone_number",
        "rate", "roles", "subscription_type", "time_zone", "updated_at"}),
    "communication": frozenset({
        "body", "communication_eml_file", "created_at", "date", "documents", "etag",
        "external_properties", "id", "matter", "notification_event_subscribers", "received_at",
        "receivers", "senders", "subject", "time_entries", "time_entries_count", "type",
        "updated_at", "user"}),
    "activity": frozenset({
        "activity_description", "bill", "billed", "calendar_entry", "client_portal",
        "communication", "contact_note", "contingency_fee", "created_at", "date",
        "document_version", "etag", "expense_category", "flat_rate", "id",
        "legal_aid_uk_activity", "matter", "matter_note", "no_charge", "non_billable",
        "non_billable_total", "note", "on_bill", "price", "quantity", "quantity_in_hours",
        "quantity_redacted", "reference", "rounded_quantity", "rounded_quantity_in_hours",
        "subject", "task", "tax_setting", "text_message_conversation", "timer", "total", "type",
        "updated_at", "user", "utbms_expense", "vendor"}),
    "document": frozenset({
        "contact", "content_type", "created_at", "creator", "deleted_at", "document_category",
        "document_versions", "etag", "external_properties", "filename", "group", "id",
        "latest_document_version", "locked", "matter", "name", "parent", "received_at", "size",
        "type", "updated_at"}),
    "folder": frozenset({
        "contact", "created_at", "creator", "deleted_at", "document_category", "etag",
        "external_properties", "group", "id", "latest_document_version", "locked", "matter",
        "name", "parent", "root", "type", "updated_at"}),
    "custom_field": frozenset({
        "created_at", "deleted", "display_order", "displayed", "etag", "field_type", "id", "name",
        "parent_type", "picklist_options", "required", "updated_at"}),
    "webhook": frozenset({
        "created_at", "etag", "events", "expires_at", "fields", "id", "model", "shared_secret",
        "status", "updated_at", "url", "user"}),
    "activity_description": frozenset({
        "accessible_to_user", "category_type", "created_at", "default", "etag", "groups", "id",
        "name", "rate", "type", "updated_at", "utbms_activity", "utbms_activity_id", "utbms_task",
        "utbms_task_id", "utbms_task_name", "visible_to_co_counsel", "xero_service_code"}),
}

#: Values Clio checks (400 for a query parameter, 422 for a request body).
COMMUNICATION_TYPES = frozenset({"PhoneCommunication", "EmailCommunication"})
PARTICIPANT_TYPES = frozenset({"User", "Contact"})
MATTER_STATUSES = frozenset({"open", "closed", "pending"})
ACTIVITY_TYPES = frozenset({"TimeEntry", "ExpenseEntry", "HardCostEntry", "SoftCostEntry"})
CONTACT_TYPES = frozenset({"Person", "Company"})
DOCUMENT_PARENT_TYPES = frozenset({"Matter", "Contact", "Folder", "Document"})

#: The minor versions an ``X-API-VERSION`` header may ask for; anything else is 410 Gone.
VERSION = re.compile(r"^4\.0\.(?:[0-9]|1[0-3])$")
DEFAULT_VERSION = "4.0.9"

SearchMode = Literal["substring", "token", "prefix", "exact"]
SEARCH_MODES: tuple[SearchMode, ...] = ("substring", "token", "prefix", "exact")


def text_matches(query: str, value: str | None, mode: SearchMode) -> bool:
    """Whether Clio's ``query`` finds ``value`` under a matching mode (case-insensitive).

    * substring: the query appears anywhere in the value ("0142" finds "(212) 555-0142");
    * token: every word of the query (a run of letters and digits) is a word of the value
      ("555-0142" and "0142" find "(212) 555-0142"; "2125550142" does not);
    * prefix: the value begins with the query;
    * exact: the value is the query.
    """
    if not value:
        return False
    q, v = query.casefold().strip(), value.casefold().strip()
    if not q:
        return False
    if mode == "substring":
        return q in v
    if mode == "prefix":
        return v.startswith(q)
    if mode == "exact":
        return q == v
    words = set(re.findall(r"\w+", v))
    wanted = re.findall(r"\w+", q)
    return bool(wanted) and all(w in words for w in wanted)


class FieldsError(ValueError):
    """A 400: an unknown field, or a ``fields`` parameter that is malformed."""


def parse_fields(text: str | None) -> dict[str, set[str] | None]:
    """``id,name,phone_numbers{number,name}`` -> {"id": None, ..., "phone_numbers": {...}}."""
    if not text:
        return {"id": None, "etag": None}
    out: dict[str, set[str] | None] = {}
    for m in re.finditer(r"([a-z_]+)(\{([^{}]*)\})?", text):
        name, nested = m.group(1), m.group(3)
        if nested is not None and "{" in nested:
            raise FieldsError("fields may select one level of nesting only")
        out[name] = {n.strip() for n in nested.split(",")} if nested is not None else None
    if re.sub(r"([a-z_]+)(\{[^{}]*\})?", "", text).strip(","):
        raise FieldsError("the fields parameter is malformed")
    return out


def check_fields(fields: dict[str, set[str] | None], kind: str) -> None:
    """A 400 for a field the resource does not have, whether or not any record is answered."""
    unknown = set(fields) - KNOWN_FIELDS[kind]
    if unknown:
        raise FieldsError(f"invalid fields for {kind}: {', '.join(sorted(unknown))}")


def shape(record: dict[str, object], fields: dict[str, set[str] | None],
          kind: str) -> dict[str, object]:
    """The record as Clio answers it: the fields asked for, nested ones narrowed."""
    check_fields(fields, kind)
    out: dict[str, object] = {}
    for name, nested in fields.items():
        value = record.get(name)
        if nested is not None and value is not None:
            if isinstance(value, list):
                value = [{k: v for k, v in item.items() if k in nested} for item in value]
            elif isinstance(value, dict):
                value = {k: v for k, v in value.items() if k in nested}
        out[name] = value
    return out
