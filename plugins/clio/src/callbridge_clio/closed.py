"""Closed matters for the host's closed-matter sync: matters whose status is Closed,
updated since a position, with their client and the asked custom fields.

One call reads one page of ``GET /matters.json?status=closed&updated_since=...``
(cursor paging, ``order=id(asc)``), the clients of that page in one
``GET /contacts.json?ids[]=...``, and the definitions of the firm's contact and matter
custom fields (two requests, on every call, so a field fixed in Clio is seen at once).
Fields are matched by exact name (``BroadlyOptOut`` is not ``broadlyoptout``) among
the fields not deleted; a checkbox's value reads as True or False, a field left unset
(no value, or a value of null) as None.

The position is JSON: where the walk reads from (``since``, inclusive), the page token
within the walk, the highest ``updated_at`` seen so far, when the walk began (on the
host's clock), and the day the firm's sync began (no matter closed before it is
reported). The next walk reads from the highest ``updated_at`` seen, but never from
later than :data:`MARGIN` before the last walk began: pages are read in id order, so a
matter whose page was read early and that closed while the walk went on has an
``updated_at`` below a later page's; reading the last minutes again catches it (and
clock differences between the host and Clio). A walk that saw no matter keeps its
``since``. A matter read again is harmless: the host sends each closed matter once.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Literal

from callbridge.context import HookContext
from callbridge.models import ClientContact, ClosedMatter, ClosedMatterPage, CustomField, FieldValue
from callbridge.phones import try_e164
from pydantic import BaseModel

from callbridge_clio.api import ClioApi, ClioCustomField

#: Matters per page (Clio's cap is 200).
PAGE_SIZE = 200
#: How far before a walk began the next one reads again.
MARGIN = timedelta(minutes=5)
MATTER_FIELDS = ("id,display_number,description,status,close_date,updated_at,client{id},"
                 "custom_field_values{id,value,custom_field}")
CLIENT_FIELDS = ("id,name,first_name,last_name,primary_email_address,"
                 "email_addresses{address,primary},phone_numbers{number,primary},"
                 "custom_field_values{id,value,custom_field}")


class Position(BaseModel):
    start: date
    since: datetime
    cursor: str | None = None
    high: datetime | None = None
    began: datetime | None = None


def _position(text: str | None, since: datetime) -> Position:
    if text:
        return Position.model_validate_json(text)
    return Position(start=since.date(), since=since)


def _definitions(fields: list[ClioCustomField], on: Literal["contact", "matter"],
                 names: list[str]
                 ) -> dict[str, CustomField]:
    by_name = {f.name: f for f in fields if not f.deleted}
    return {name: CustomField(name=name, on=on,
                              field_type=by_name[name].field_type.lower()
                              if name in by_name else None)
            for name in names}


def _ids(fields: list[ClioCustomField], names: list[str]) -> dict[int, str]:
    wanted = set(names)
    return {f.id: f.name for f in fields if not f.deleted and f.name in wanted}


def _value(raw: Any, field_type: str | None) -> FieldValue:
    if raw is None or raw == "":
        return None
    if field_type == "checkbox":
        return raw is True or str(raw).strip().lower() in ("true", "1", "yes")
    return str(raw)


def _values(record: dict[str, Any], ids: dict[int, str],
            types: dict[str, CustomField]) -> dict[str, FieldValue]:
    out: dict[str, FieldValue] = dict.fromkeys(ids.values())
    for v in record.get("custom_field_values") or []:
        field_id = (v.get("custom_field") or {}).get("id")
        if field_id in ids:
            name = ids[field_id]
            out[name] = _value(v.get("value"), types[name].field_type)
    return out


def _client(row: dict[str, Any], ids: dict[int, str], types: dict[str, CustomField],
            region: str) -> ClientContact:
    emails = sorted(row.get("email_addresses") or [], key=lambda e: not e.get("primary"))
    email = row.get("primary_email_address") or (emails[0]["address"] if emails else None)
    numbers = sorted(row.get("phone_numbers") or [], key=lambda p: not p.get("primary"))
    phones = tuple(try_e164(p["number"], region) or p["number"] for p in numbers)
    return ClientContact(id=str(row["id"]), name=row.get("name"),
                         first_name=row.get("first_name") or None,
                         last_name=row.get("last_name") or None, email=email, phones=phones,
                         custom_fields=_values(row, ids, types))


async def closed_matters_since(ctx: HookContext, position: str | None, since: datetime,
                               contact_fields: list[str],
                               matter_fields: list[str]) -> ClosedMatterPage:
    pos = _position(position, since)
    began = pos.began or ctx.clock.now()
    api = ClioApi(ctx.http)
    contact_defs_raw = await api.custom_fields("contact") if contact_fields else []
    matter_defs_raw = await api.custom_fields("matter") if matter_fields else []
    contact_defs = _definitions(contact_defs_raw, "contact", contact_fields)
    matter_defs = _definitions(matter_defs_raw, "matter", matter_fields)
    rows, token = await api.page("/matters.json", MATTER_FIELDS, status="closed",
                                 updated_since=pos.since.isoformat(), limit=PAGE_SIZE,
                                 page_token=pos.cursor)
    high = pos.high
    for row in rows:
        updated = datetime.fromisoformat(str(row["updated_at"]).replace("Z", "+00:00"))
        high = updated if high is None or updated > high else high
    closing = [r for r in rows if r.get("close_date") and r.get("client")
               and date.fromisoformat(r["close_date"]) >= pos.start]
    client_ids = sorted({int(r["client"]["id"]) for r in closing})
    clients: dict[str, ClientContact] = {}
    if client_ids:
        contact_ids = _ids(contact_defs_raw, contact_fields)
        ids: dict[str, Any] = {"ids[]": client_ids}
        for row in await api.all_pages("/contacts.json", CLIENT_FIELDS, **ids):
            client = _client(row, contact_ids, contact_defs, ctx.tenant.default_region)
            clients[client.id] = client
    matter_ids = _ids(matter_defs_raw, matter_fields)
    matters = tuple(
        ClosedMatter(id=str(r["id"]), name=r.get("display_number"),
                     description=r.get("description"),
                     closed_on=date.fromisoformat(r["close_date"]),
                     client=clients[str(r["client"]["id"])],
                     custom_fields=_values(r, matter_ids, matter_defs))
        for r in closing if str(r["client"]["id"]) in clients)
    if token:
        after = Position(start=pos.start, since=pos.since, cursor=token, high=high, began=began)
    else:
        after = Position(start=pos.start,
                         since=max(pos.since, min(high, began - MARGIN)) if high else pos.since)
    return ClosedMatterPage(
        matters=matters, position=after.model_dump_json(), more=bool(token),
        fields=(*contact_defs.values(), *matter_defs.values()))
