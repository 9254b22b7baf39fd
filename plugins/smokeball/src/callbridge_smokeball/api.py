"""Smokeball's API as the plugin uses it: typed records, paging, writes.

Only what the plugin reads is modelled; every model ignores the keys it does not
name, so a field Smokeball adds never breaks a read. Lists are paged with
``Offset``/``Limit`` and followed to the end (``size`` is the total). Every
create answers ``202 Accepted`` with a :class:`Link` whose ``id`` is the new
record's id: the record may not be readable yet. Every write carries a
``RequestId`` header (the event's marker and the step), which Smokeball echoes
in its answer and in its webhook callbacks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx2
from callbridge.errors import TransientError
from pydantic import BaseModel, ConfigDict, Field

#: The largest page Smokeball serves (``Limit`` 1..500).
PAGE_SIZE = 500
#: .NET ticks (100 ns since 0001-01-01 UTC) at the Unix epoch.
TICKS_AT_EPOCH = 621_355_968_000_000_000
#: The key under which the plugin's marker goes in a file's ``fileAdditionalData``.
FILE_MARKER_KEY = "callbridgeMarker"

T = TypeVar("T", bound=BaseModel)


def to_ticks(when: datetime) -> int:
    """A UTC instant as .NET ticks, what ``UpdatedSince`` and ``lastUpdated`` use."""
    delta = when.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return TICKS_AT_EPOCH + (delta // timedelta(microseconds=1)) * 10


def from_ticks(ticks: int) -> datetime:
    """.NET ticks as an aware UTC datetime (to the microsecond)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=(ticks - TICKS_AT_EPOCH) // 10)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Link(_Model):
    """Smokeball's hypermedia link; a create's answer (its ``id`` is the new record's)."""

    id: str | None = None
    href: str | None = None
    relation: str | None = None
    method: str | None = None


class PhoneNumber(_Model):
    """A number as typed in Smokeball: an area code and the rest, free text each."""

    area_code: str | None = Field(default=None, alias="areaCode")
    number: str | None = None
    extension: str | None = None

    def text(self) -> str | None:
        """One string a phone parser can read: ``(02) 9999 0000``, or the number alone."""
        number = (self.number or "").strip()
        area = (self.area_code or "").strip()
        if not number:
            return None
        if area and not number.startswith(("+", area)):
            return f"({area}) {number}"
        return number


class Person(_Model):
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    email: str | None = None
    phone: PhoneNumber | None = None
    phone2: PhoneNumber | None = None
    cell: PhoneNumber | None = None


class Company(_Model):
    name: str | None = None
    email: str | None = None
    phone: PhoneNumber | None = None


class SmokeballContact(_Model):
    id: str
    external_system_id: str | None = Field(default=None, alias="externalSystemId")
    person: Person | None = None
    company: Company | None = None
    is_deleted: bool = Field(default=False, alias="isDeleted")
    last_updated: int | None = Field(default=None, alias="lastUpdated")

    @property
    def name(self) -> str | None:
        if self.person is not None:
            full = " ".join(p for p in (self.person.first_name, self.person.last_name) if p)
            return full or None
        return self.company.name if self.company is not None else None

    def phone_texts(self) -> list[str]:
        """Person phone, phone2 and cell, and company phone, each as one readable string."""
        numbers: list[PhoneNumber | None] = []
        if self.person is not None:
            numbers += [self.person.phone, self.person.phone2, self.person.cell]
        if self.company is not None:
            numbers.append(self.company.phone)
        return [t for n in numbers if n is not None and (t := n.text())]

    def emails(self) -> list[str]:
        found = [self.person.email if self.person else None,
                 self.company.email if self.company else None]
        return [e for e in found if e]


class SmokeballMatter(_Model):
    id: str
    number: str | None = None
    title: str | None = None
    status: str | None = None
    clients: list[Link] = Field(default_factory=list)
    other_sides: list[Link] = Field(default_factory=list, alias="otherSides")


class Staff(_Model):
    id: str
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    email: str | None = None
    former: bool = False
    enabled: bool = True
    user_id: str | None = Field(default=None, alias="userId")

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)


class ActivityCode(_Model):
    id: str
    code: str | None = None
    description: str | None = None
    type: int | None = None
    is_billable: bool | None = Field(default=None, alias="isBillable")
    is_deleted: bool = Field(default=False, alias="isDeleted")


class Fee(_Model):
    id: str
    matter_id: str | None = Field(default=None, alias="matterId")
    subject: str | None = None
    description: str | None = None
    fee_date: str | None = Field(default=None, alias="feeDate")
    activity_code: str | None = Field(default=None, alias="activityCode")
    duration: int | None = None
    is_deleted: bool = Field(default=False, alias="isDeleted")


class Task(_Model):
    id: str
    subject: str | None = None
    note: str | None = None
    matter: Link | None = None
    created_by: Link | None = Field(default=None, alias="createdBy")
    assignees: list[Link] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    is_completed: bool = Field(default=False, alias="isCompleted")
    due_date_only: str | None = Field(default=None, alias="dueDateOnly")
    completed_date_only: str | None = Field(default=None, alias="completedDateOnly")
    duration: str | None = None
    is_deleted: bool = Field(default=False, alias="isDeleted")
    last_updated: int | None = Field(default=None, alias="lastUpdated")

    def as_dto(self) -> dict[str, Any]:
        """The task as a TaskDto, for a PUT that changes one field and keeps the rest."""
        dto: dict[str, Any] = {
            "staffId": self.created_by.id if self.created_by else None,
            "assigneeIds": [a.id for a in self.assignees if a.id],
            "subject": self.subject, "note": self.note, "isCompleted": self.is_completed,
            "categories": self.categories, "dueDateOnly": self.due_date_only,
            "completedDateOnly": self.completed_date_only, "duration": self.duration,
            "matterId": self.matter.id if self.matter else None,
        }
        return {k: v for k, v in dto.items() if v is not None}


class Memo(_Model):
    id: str
    title: str | None = None
    text: str | None = None
    plain_text: str | None = Field(default=None, alias="plainText")
    is_deleted: bool = Field(default=False, alias="isDeleted")


class UploadFileInfo(_Model):
    file_id: str = Field(alias="fileId")
    upload_url: str = Field(alias="uploadUrl")
    expiry: str | None = None


class SmokeballFile(_Model):
    id: str
    name: str | None = None
    is_uploaded: bool = Field(default=False, alias="isUploaded")
    additional_data: dict[str, Any] | None = Field(default=None, alias="additionalData")

    @property
    def marker(self) -> str | None:
        value = (self.additional_data or {}).get(FILE_MARKER_KEY)
        return str(value) if value is not None else None


class SmokeballApi:
    """The calls the plugin makes, over the host's client for one connection."""

    def __init__(self, http: httpx2.AsyncClient) -> None:
        self.http = http

    # --- reading ---------------------------------------------------------------------

    async def _get(self, path: str, params: Any = None) -> Any:
        response = await self.http.get(path, params=params)
        return response.json()

    async def pages(self, path: str, model: type[T], params: Mapping[str, Any] | None = None,
                    *, limit: int = PAGE_SIZE) -> AsyncIterator[T]:
        """Every record of a list, page after page until ``size`` is reached."""
        offset = 0
        while True:
            query = [*_pairs(params), ("Offset", offset), ("Limit", limit)]
            page = await self._get(path, query)
            rows = page.get("value") or []
            for row in rows:
                yield model.model_validate(row)
            offset += len(rows)
            size = page.get("size")
            if not rows or (isinstance(size, int) and offset >= size):
                return

    async def all(self, path: str, model: type[T], params: Mapping[str, Any] | None = None
                  ) -> list[T]:
        return [row async for row in self.pages(path, model, params)]

    async def page(self, path: str, model: type[T], params: Mapping[str, Any] | None,
                   *, offset: int, limit: int = PAGE_SIZE) -> tuple[list[T], int | None]:
        """One page and the total (``size``), for callers that keep their own cursor."""
        page = await self._get(path, [*_pairs(params), ("Offset", offset), ("Limit", limit)])
        rows = [model.model_validate(r) for r in page.get("value") or []]
        size = page.get("size")
        return rows, size if isinstance(size, int) else None

    async def search_contacts(self, *terms: str) -> list[SmokeballContact]:
        return await self.all("/contacts", SmokeballContact, {"Search": list(terms)})

    async def contacts_updated_since(self, since: datetime) -> list[SmokeballContact]:
        return await self.all("/contacts", SmokeballContact, {"UpdatedSince": to_ticks(since)})

    async def matters_of(self, contact_id: str, statuses: list[str]) -> list[SmokeballMatter]:
        return await self.all("/matters", SmokeballMatter,
                              {"ContactId": contact_id, "Status": statuses})

    async def staff(self) -> list[Staff]:
        return await self.all("/staff", Staff)

    async def activity_codes(self) -> list[ActivityCode]:
        return await self.all("/activitycodes", ActivityCode)

    async def fees_updated_since(self, matter_id: str, since: datetime) -> list[Fee]:
        return await self.all(f"/matters/{matter_id}/fees", Fee, {"UpdatedSince": to_ticks(since)})

    async def fee(self, matter_id: str, fee_id: str) -> Fee:
        return Fee.model_validate(await self._get(f"/matters/{matter_id}/fees/{fee_id}"))

    async def tasks_updated_since(self, since: datetime, matter_id: str | None = None
                                  ) -> list[Task]:
        params: dict[str, Any] = {"UpdatedSince": to_ticks(since)}
        if matter_id is not None:
            params["MatterId"] = matter_id
        return await self.all("/tasks", Task, params)

    async def task(self, task_id: str) -> Task:
        return Task.model_validate(await self._get(f"/tasks/{task_id}"))

    async def memos(self, matter_id: str) -> list[Memo]:
        return await self.all(f"/matters/{matter_id}/memos", Memo)

    async def memo(self, matter_id: str, memo_id: str) -> Memo:
        return Memo.model_validate(await self._get(f"/matters/{matter_id}/memos/{memo_id}"))

    async def files(self, matter_id: str) -> list[SmokeballFile]:
        return await self.all(f"/matters/{matter_id}/documents/files", SmokeballFile)

    async def file(self, matter_id: str, file_id: str) -> SmokeballFile:
        return SmokeballFile.model_validate(
            await self._get(f"/matters/{matter_id}/documents/files/{file_id}"))

    # --- writing ---------------------------------------------------------------------

    async def _write(self, method: str, path: str, body: Mapping[str, Any], request_id: str
                     ) -> Any:
        response = await self.http.request(method, path, json=dict(body),
                                           headers={"RequestId": request_id})
        return response.json() if response.content else {}

    async def create(self, path: str, body: Mapping[str, Any], *, request_id: str) -> Link:
        """POST a new record; Smokeball answers 202 with the record's Link."""
        link = Link.model_validate(await self._write("POST", path, body, request_id))
        if not link.id:
            raise TransientError(f"POST {path.split('/')[1]}: the answer holds no record id")
        return link

    async def update(self, method: str, path: str, body: Mapping[str, Any], *,
                     request_id: str) -> None:
        await self._write(method, path, body, request_id)

    async def add_file(self, matter_id: str, body: Mapping[str, Any], *,
                       request_id: str) -> UploadFileInfo:
        data = await self._write("POST", f"/matters/{matter_id}/documents/files", body, request_id)
        return UploadFileInfo.model_validate(data)


def _pairs(params: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """Query pairs; a list value repeats its name (``Search=a&Search=b``)."""
    out: list[tuple[str, Any]] = []
    for name, value in (params or {}).items():
        for item in value if isinstance(value, list) else [value]:
            out.append((name, item))
    return out
