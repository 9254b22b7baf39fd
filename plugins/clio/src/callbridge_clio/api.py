"""Typed calls to the Clio Manage API v4, over the host's client (``ctx.http``).

Every request sends ``fields`` (without it Clio answers only ``id`` and
``etag``); list calls ask for ``order=id(asc)`` (Clio's cursor paging needs it) and
read page after page, each asked from the base URL with the page token of the last
answer's ``meta.paging.next`` (never following that URL: credentials go only where the
plugin sends them). An answer without ``data`` is a clear transient error. Answers are
read into pydantic models that ignore fields this plugin does not use.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
from callbridge.errors import TransientError
from pydantic import BaseModel, ConfigDict

#: The external property that marks records written by callbridge.
MARKER = "callbridge_event"

CONTACT_FIELDS = "id,name,first_name,last_name,type,created_at,updated_at,phone_numbers{number,name},email_addresses{address}"
MATTER_FIELDS = "id,display_number,description,status,client{id,name},close_date,updated_at"
RELATIONSHIP_FIELDS = "id,description,updated_at,contact{id},matter{id,display_number,description,status}"
USER_FIELDS = "id,name,email,enabled"
COMMUNICATION_FIELDS = "id,subject,body,received_at,matter{id},external_properties{name,value}"
ACTIVITY_FIELDS = "id,type,date,quantity,non_billable,communication{id},matter{id}"
DOCUMENT_FIELDS = "id,name,parent,external_properties{name,value},latest_document_version{uuid,put_url,put_headers,fully_uploaded}"
FOLDER_FIELDS = "id,name,parent"
CUSTOM_FIELD_FIELDS = "id,name,field_type,parent_type,displayed,deleted"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Ref(_Model):
    id: int
    name: str | None = None


class PhoneNumber(_Model):
    number: str
    name: str | None = None


class EmailAddress(_Model):
    address: str


class ClioContact(_Model):
    id: int
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    type: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    phone_numbers: list[PhoneNumber] = []
    email_addresses: list[EmailAddress] = []


class ClioMatter(_Model):
    id: int
    display_number: str | None = None
    description: str | None = None
    status: str | None = None
    client: Ref | None = None
    close_date: str | None = None
    updated_at: datetime | None = None
    custom_field_values: list[dict[str, Any]] = []


class ClioRelationship(_Model):
    id: int
    description: str | None = None
    updated_at: datetime | None = None
    contact: Ref | None = None
    matter: ClioMatter | None = None


class ClioUser(_Model):
    id: int
    name: str | None = None
    email: str | None = None
    enabled: bool = True


class ExternalProperty(_Model):
    name: str
    value: str


class ClioCommunication(_Model):
    id: int
    subject: str | None = None
    body: str | None = None
    external_properties: list[ExternalProperty] = []


class ClioActivity(_Model):
    id: int
    quantity: float | None = None


class PutHeader(_Model):
    name: str
    value: str


class DocumentVersion(_Model):
    uuid: str
    put_url: str | None = None
    put_headers: list[PutHeader] = []
    fully_uploaded: bool = False


class ClioDocument(_Model):
    id: int
    name: str | None = None
    latest_document_version: DocumentVersion | None = None


class ClioFolder(_Model):
    id: int
    name: str


class ClioCustomField(_Model):
    id: int
    name: str
    field_type: str
    parent_type: str
    deleted: bool = False


def page_token(next_url: str | None) -> str | None:
    """The page token of a ``meta.paging.next`` URL (None when there is no next page)."""
    if not next_url:
        return None
    tokens = parse_qs(urlsplit(next_url).query).get("page_token")
    if not tokens:
        raise TransientError("Clio answered a next page without a page token")
    return tokens[0]


def _data(r: httpx2.Response) -> dict[str, Any]:
    """The answer's JSON object holding ``data``; a clear error when it is not one."""
    what = f"{r.request.method} {r.request.url.path}"
    try:
        body = r.json()
    except ValueError:
        raise TransientError(f"Clio answered {what} with something other than JSON") from None
    if not isinstance(body, dict) or "data" not in body:
        raise TransientError(f"Clio answered {what} without data")
    return body


def _record(r: httpx2.Response) -> dict[str, Any]:
    data = _data(r)["data"]
    if not isinstance(data, dict):
        raise TransientError(f"Clio answered {r.request.method} {r.request.url.path} with no record")
    return dict(data)


class ClioApi:
    """The requests the plugin makes, each a method."""

    def __init__(self, http: httpx2.AsyncClient) -> None:
        self.http = http

    async def all_pages(self, path: str, fields: str, *, ordered: bool = True,
                        **params: Any) -> list[dict[str, Any]]:
        """Every record of a list endpoint, page after page by cursor."""
        records, token = await self.page(path, fields, ordered=ordered, **params)
        while token:
            more, token = await self.page(path, fields, ordered=ordered, page_token=token, **params)
            records += more
        return records

    async def page(self, path: str, fields: str, *, ordered: bool = True,
                   **params: Any) -> tuple[list[dict[str, Any]], str | None]:
        """One page and the token of the next (None at the end).

        Clio pages by cursor only for lists ordered by ``id(asc)``: every list that takes
        an ``order`` asks for it (``ordered=False`` for the few that take none). The next
        page is asked for again from the base URL with the token: the ``next`` URL in the
        answer is read for its token only, never followed.
        """
        query = {k: v for k, v in params.items() if v is not None}
        if ordered:
            query["order"] = "id(asc)"
        r = await self.http.get(path, params={**query, "fields": fields})
        body = _data(r)
        rows = body["data"]
        if not isinstance(rows, list):
            raise TransientError(f"Clio answered {r.request.method} {r.request.url.path} with no list of data")
        return rows, page_token(((body.get("meta") or {}).get("paging") or {}).get("next"))

    async def create(self, path: str, fields: str, data: dict[str, Any]) -> dict[str, Any]:
        r = await self.http.post(path, params={"fields": fields}, json={"data": data})
        return _record(r)

    async def update(self, path: str, fields: str, data: dict[str, Any]) -> dict[str, Any]:
        r = await self.http.patch(path, params={"fields": fields}, json={"data": data},
                                  extensions={"callbridge_idempotent": True})
        return _record(r)

    async def get(self, path: str, fields: str) -> dict[str, Any]:
        return _record(await self.http.get(path, params={"fields": fields}))

    # --- contacts --------------------------------------------------------------------

    async def search_contacts(self, query: str, **filters: Any) -> list[ClioContact]:
        rows = await self.all_pages("/contacts.json", CONTACT_FIELDS, query=query, **filters)
        return [ClioContact.model_validate(r) for r in rows]

    async def create_contact(self, data: dict[str, Any]) -> ClioContact:
        return ClioContact.model_validate(await self.create("/contacts.json", CONTACT_FIELDS, data))

    async def contacts_created_since(self, since: datetime) -> list[ClioContact]:
        """Every contact created since a time (a filter, not the text search)."""
        rows = await self.all_pages("/contacts.json", CONTACT_FIELDS, created_since=since.isoformat())
        return [ClioContact.model_validate(r) for r in rows]

    async def contacts_page(self, *, updated_since: datetime | None,
                            cursor: str | None) -> tuple[list[ClioContact], str | None]:
        """One page of contacts changed since a time; ``cursor`` is the page token."""
        rows, token = await self.page(
            "/contacts.json", CONTACT_FIELDS, limit=200, page_token=cursor,
            updated_since=updated_since.isoformat() if updated_since else None)
        return [ClioContact.model_validate(r) for r in rows], token

    # --- matters ---------------------------------------------------------------------

    async def client_matters(self, contact_id: int, statuses: str) -> list[ClioMatter]:
        rows = await self.all_pages("/matters.json", MATTER_FIELDS, client_id=contact_id, status=statuses)
        return [ClioMatter.model_validate(r) for r in rows]

    async def relationships(self, contact_id: int) -> list[ClioRelationship]:
        rows = await self.all_pages("/relationships.json", RELATIONSHIP_FIELDS, ordered=False,
                                    contact_id=contact_id)
        return [ClioRelationship.model_validate(r) for r in rows]

    async def relationships_changed(self, since: datetime | None) -> list[ClioRelationship]:
        """Every relationship changed since a time (all of them without one)."""
        rows = await self.all_pages("/relationships.json", RELATIONSHIP_FIELDS, ordered=False,
                                    updated_since=since.isoformat() if since else None)
        return [ClioRelationship.model_validate(r) for r in rows]

    async def matters_changed(self, *, since: datetime | None, status: str | None = None,
                              custom_field_ids: list[int] | None = None) -> list[ClioMatter]:
        """Matters updated since a time, with status, close date and custom-field values
        (for the closed-matter sync and the matter index)."""
        fields = MATTER_FIELDS + ",custom_field_values{id,value,field_name,field_type,custom_field}"
        params: dict[str, Any] = {"status": status,
                                  "updated_since": since.isoformat() if since else None}
        if custom_field_ids:
            params["custom_field_ids[]"] = custom_field_ids
        rows = await self.all_pages("/matters.json", fields, **params)
        return [ClioMatter.model_validate(r) for r in rows]

    async def custom_fields(self, parent_type: str) -> list[ClioCustomField]:
        rows = await self.all_pages("/custom_fields.json", CUSTOM_FIELD_FIELDS,
                                    parent_type=parent_type.lower())
        return [ClioCustomField.model_validate(r) for r in rows]

    # --- users -----------------------------------------------------------------------

    async def users(self) -> list[ClioUser]:
        """The firm's enabled users (without ``enabled=true`` Clio lists disabled ones too)."""
        rows = await self.all_pages("/users.json", USER_FIELDS, enabled="true")
        return [ClioUser.model_validate(r) for r in rows]

    async def who_am_i(self) -> ClioUser:
        return ClioUser.model_validate(await self.get("/users/who_am_i.json", USER_FIELDS))

    # --- communications, activities, documents ---------------------------------------

    async def communications_marked(self, marker: str) -> list[ClioCommunication]:
        rows = await self.all_pages("/communications.json", COMMUNICATION_FIELDS,
                                    external_property_name=MARKER, external_property_value=marker)
        return [ClioCommunication.model_validate(r) for r in rows]

    async def create_communication(self, data: dict[str, Any]) -> ClioCommunication:
        return ClioCommunication.model_validate(
            await self.create("/communications.json", COMMUNICATION_FIELDS, data))

    async def communication(self, cid: int) -> ClioCommunication:
        return ClioCommunication.model_validate(
            await self.get(f"/communications/{cid}.json", COMMUNICATION_FIELDS))

    async def update_communication(self, cid: int, data: dict[str, Any]) -> ClioCommunication:
        return ClioCommunication.model_validate(
            await self.update(f"/communications/{cid}.json", COMMUNICATION_FIELDS, data))

    async def time_entries_of(self, communication_id: int) -> list[ClioActivity]:
        rows = await self.all_pages("/activities.json", ACTIVITY_FIELDS,
                                    communication_id=communication_id)
        return [ClioActivity.model_validate(r) for r in rows]

    async def create_activity(self, data: dict[str, Any]) -> ClioActivity:
        return ClioActivity.model_validate(await self.create("/activities.json", ACTIVITY_FIELDS, data))

    async def activity_description_named(self, name: str) -> int | None:
        rows = await self.all_pages("/activity_descriptions.json", "id,name", ordered=False)
        return next((int(r["id"]) for r in rows if r.get("name") == name), None)

    async def create_activity_description(self, name: str) -> int:
        return int((await self.create("/activity_descriptions.json", "id,name", {"name": name}))["id"])

    async def documents_marked(self, marker: str) -> list[ClioDocument]:
        rows = await self.all_pages("/documents.json", DOCUMENT_FIELDS, external_property_name=MARKER,
                                    external_property_value=marker, show_uncompleted="true")
        return [ClioDocument.model_validate(r) for r in rows]

    async def document(self, document_id: int) -> ClioDocument:
        return ClioDocument.model_validate(await self.get(f"/documents/{document_id}.json",
                                                          DOCUMENT_FIELDS))

    async def create_document(self, data: dict[str, Any]) -> ClioDocument:
        return ClioDocument.model_validate(await self.create("/documents.json", DOCUMENT_FIELDS, data))

    async def mark_uploaded(self, document_id: int, uuid: str) -> ClioDocument:
        return ClioDocument.model_validate(await self.update(
            f"/documents/{document_id}.json", DOCUMENT_FIELDS, {"uuid": uuid, "fully_uploaded": True}))

    async def root_folder(self, parent_type: str, parent_id: int) -> int:
        """The folder of a matter or a contact (``folder{id}`` on it)."""
        path = f"/matters/{parent_id}.json" if parent_type == "Matter" else f"/contacts/{parent_id}.json"
        folder = (await self.get(path, "id,folder{id}")).get("folder") or {}
        if not isinstance(folder.get("id"), int):
            raise TransientError(f"Clio answered GET {path.split('/')[1]} without its folder")
        return int(folder["id"])

    async def folder_named(self, name: str, *, parent_folder: int) -> ClioFolder | None:
        """The folder called ``name`` directly inside folder ``parent_folder``."""
        rows = await self.all_pages("/folders.json", FOLDER_FIELDS, query=name, parent_id=parent_folder)
        return next((ClioFolder.model_validate(r) for r in rows if r.get("name") == name), None)

    async def create_folder(self, name: str, *, parent_folder: int) -> ClioFolder:
        return ClioFolder.model_validate(await self.create(
            "/folders.json", FOLDER_FIELDS, {"name": name, "parent": {"id": parent_folder,
                                                                      "type": "Folder"}}))
