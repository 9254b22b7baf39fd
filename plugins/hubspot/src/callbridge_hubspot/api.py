"""Typed calls to HubSpot's CRM API v3, over the host's client (``ctx.http``).

Answers are read into pydantic models that ignore fields this plugin does not
use. Every request goes through :meth:`HubSpotApi.send`, which

* draws CRM searches from the separate search bucket (5 a second per portal);
* reads ``X-HubSpot-RateLimit-Daily-Remaining``: at 0 the portal's daily budget is
  spent, and every further request raises
  :class:`~callbridge_hubspot.limits.DailyLimitReached` until the portal's midnight
  without being sent;
* turns a 429 into the host's error by its ``policyName``: ``DAILY`` parks until
  the portal's midnight, anything else (``TEN_SECONDLY_ROLLING``) waits for the
  window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx2
from callbridge.errors import AppError, RateLimited
from pydantic import BaseModel, ConfigDict, Field

from callbridge_hubspot import limits

#: Association type ids (HUBSPOT_DEFINED) from an activity to a contact.
CALL_TO_CONTACT = 194
COMMUNICATION_TO_CONTACT = 81
NOTE_TO_CONTACT = 202
#: Batch endpoints take at most this many inputs a request.
BATCH_MAX = 100
#: A search answers at most this many records a page.
SEARCH_PAGE_MAX = 200
#: The search extension that draws from the plan's search bucket.
SEARCH = {"callbridge_bucket": "search", "callbridge_idempotent": True}

CONTACT_PROPERTIES = ("firstname", "lastname", "email", "phone", "mobilephone",
                     "lastmodifieddate", "createdate")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class HubSpotObject(_Model):
    """A CRM record (SimplePublicObject)."""

    id: str
    properties: dict[str, str | None] = {}
    created_at: datetime | None = Field(default=None, alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")
    archived: bool = False
    object_write_trace_id: str | None = Field(default=None, alias="objectWriteTraceId")

    def prop(self, name: str) -> str | None:
        return self.properties.get(name)


class _Next(_Model):
    after: str


class _Paging(_Model):
    next: _Next | None = None


class SearchPage(_Model):
    total: int = 0
    results: list[HubSpotObject] = []
    paging: _Paging | None = None

    @property
    def after(self) -> str | None:
        return self.paging.next.after if self.paging and self.paging.next else None


class Owner(_Model):
    id: str
    email: str | None = None
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    user_id: int | None = Field(default=None, alias="userId")
    archived: bool = False

    @property
    def name(self) -> str | None:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or None


class OwnerPage(_Model):
    results: list[Owner] = []
    paging: _Paging | None = None


class BatchError(_Model):
    """One failed input of a batch (StandardError), or a whole-request error (Error)."""

    status: str | None = None
    category: str | None = None
    message: str = ""
    context: dict[str, list[str]] = {}
    errors: list[dict[str, Any]] = []

    def trace_ids(self) -> set[str]:
        """The ``objectWriteTraceId`` values the error names, wherever it names them."""
        found = set(self.context.get("objectWriteTraceId", []))
        for detail in self.errors:
            ctx = detail.get("context") or {}
            found |= set(ctx.get("objectWriteTraceId", []) if isinstance(ctx, dict) else [])
        return found


class BatchAnswer(_Model):
    status: str
    results: list[HubSpotObject] = []
    errors: list[BatchError] = []
    num_errors: int = Field(default=0, alias="numErrors")


class HubSpotFile(_Model):
    id: str
    name: str | None = None
    url: str | None = None


class FilePage(_Model):
    results: list[HubSpotFile] = []


class AccountDetails(_Model):
    portal_id: int = Field(alias="portalId")
    time_zone: str = Field(alias="timeZone")


def association(to_id: str, type_id: int) -> dict[str, Any]:
    return {"to": {"id": to_id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}


def answer_of(error: AppError) -> dict[str, Any]:
    """The app's JSON answer attached to a host error, when the host attaches it."""
    answer = getattr(error, "answer", None)
    return answer if isinstance(answer, dict) else {}


class HubSpotApi:
    """The requests the plugin makes, each a method.

    ``daily``: the portal's daily-budget state (:class:`limits.DailyState`), kept by
    the caller in the host's store; ``midnight``: when the portal's day ends.
    """

    def __init__(self, http: httpx2.AsyncClient, daily: limits.DailyState | None = None,
                 midnight: Callable[[], Awaitable[datetime]] | None = None,
                 now: Callable[[], datetime] | None = None,
                 on_exhausted: Callable[[limits.DailyState], Awaitable[None]] | None = None,
                 ) -> None:
        self.http = http
        self.daily = daily or limits.DailyState()
        self._midnight = midnight
        self._now = now or limits.utcnow
        self._on_exhausted = on_exhausted
        self._resolving = False
        self.requests = 0

    async def _exhaust(self) -> datetime | None:
        if self._midnight is None or self._resolving:
            return None
        self._resolving = True  # reading the portal's time zone must not come back here
        try:
            resets_at = await self._midnight()
        finally:
            self._resolving = False
        self.daily.exhaust(resets_at)
        if self._on_exhausted is not None:
            await self._on_exhausted(self.daily)
        return resets_at

    async def send(self, method: str, path: str, *, search: bool = False,
                   idempotent: bool = False, **kwargs: Any) -> httpx2.Response:
        now = self._now()
        if self.daily.parked(now):
            raise limits.daily_limit(self.daily.resets_at, now)
        extensions: dict[str, Any] = dict(SEARCH) if search else {}
        if idempotent:
            extensions["callbridge_idempotent"] = True
        self.requests += 1
        try:
            response = await self.http.request(method, path, extensions=extensions, **kwargs)
        except RateLimited as exc:
            raise await self._rate_limited(exc) from None
        remaining = response.headers.get("X-HubSpot-RateLimit-Daily-Remaining")
        if remaining is not None and remaining.strip() == "0":
            await self._exhaust()
        return response

    async def _rate_limited(self, exc: RateLimited) -> RateLimited:
        answer = answer_of(exc)
        policy = str(answer.get("policyName") or "")
        if policy == "DAILY" or (not policy and "daily" in str(exc).lower()):
            resets_at = await self._exhaust()
            return limits.daily_limit(resets_at, self._now()) if resets_at else exc
        if exc.retry_after is None:
            # TEN_SECONDLY_ROLLING: room comes back within the 10-second window.
            return RateLimited(str(exc), retry_after=limits.BURST_WINDOW_SECONDS)
        return exc

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.send(method, path, **kwargs)).json()

    # --- search -------------------------------------------------------------------------

    async def search(self, object_type: str, filter_groups: Sequence[Mapping[str, Any]], *,
                     properties: Sequence[str], limit: int = 100, after: str | None = None,
                     sorts: Sequence[Mapping[str, str]] = ()) -> SearchPage:
        body: dict[str, Any] = {"filterGroups": list(filter_groups), "properties": list(properties),
                                "limit": min(limit, SEARCH_PAGE_MAX)}
        if sorts:
            body["sorts"] = list(sorts)
        if after:
            body["after"] = after
        data = await self.json("POST", f"/crm/v3/objects/{object_type}/search", search=True,
                               json=body)
        return SearchPage.model_validate(data)

    # --- records ------------------------------------------------------------------------

    async def create(self, object_type: str, properties: Mapping[str, str],
                     associations: Sequence[Mapping[str, Any]] = ()) -> HubSpotObject:
        data = await self.json("POST", f"/crm/v3/objects/{object_type}",
                               json={"properties": dict(properties),
                                     "associations": list(associations)})
        return HubSpotObject.model_validate(data)

    async def read(self, object_type: str, object_id: str,
                   properties: Sequence[str]) -> HubSpotObject:
        data = await self.json("GET", f"/crm/v3/objects/{object_type}/{object_id}",
                               params={"properties": ",".join(properties)})
        return HubSpotObject.model_validate(data)

    async def update(self, object_type: str, object_id: str,
                     properties: Mapping[str, str]) -> HubSpotObject:
        data = await self.json("PATCH", f"/crm/v3/objects/{object_type}/{object_id}",
                               idempotent=True, json={"properties": dict(properties)})
        return HubSpotObject.model_validate(data)

    async def batch_create(self, object_type: str,
                           inputs: Sequence[Mapping[str, Any]]) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) of a batch create; a 400 is answered, not raised.

        A 400 names the input HubSpot refused (the caller drops it and sends the
        rest); any other error is raised as the host's exception.
        """
        if len(inputs) > BATCH_MAX:
            raise ValueError(f"a batch holds at most {BATCH_MAX} inputs")
        try:
            response = await self.send("POST", f"/crm/v3/objects/{object_type}/batch/create",
                                       json={"inputs": list(inputs)})
        except AppError as exc:
            answer = answer_of(exc)
            if getattr(exc, "status_code", None) == 400 and answer:
                return 400, answer
            raise
        return response.status_code, response.json()

    # --- owners, properties, files, the account ----------------------------------------

    async def owners(self) -> list[Owner]:
        out: list[Owner] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500, "archived": "false"}
            if after:
                params["after"] = after
            page = OwnerPage.model_validate(await self.json("GET", "/crm/v3/owners",
                                                            params=params))
            out += page.results
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                return out

    async def property_exists(self, object_type: str, name: str) -> bool:
        from callbridge.errors import NotFound

        try:
            await self.send("GET", f"/crm/v3/properties/{object_type}/{name}")
        except NotFound:
            return False
        return True

    async def create_property(self, object_type: str, definition: Mapping[str, Any]) -> None:
        await self.send("POST", f"/crm/v3/properties/{object_type}", json=dict(definition))

    async def upload_file(self, content: bytes, *, filename: str, content_type: str,
                          folder_path: str) -> HubSpotFile:
        # A boundary of our own, the same for the same file: a recorded upload replays.
        boundary = "callbridge-" + hashlib.sha256(filename.encode()).hexdigest()[:24]
        data = await self.json(
            "POST", "/files/v3/files",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            files={"file": (filename, content, content_type)},
            data={"folderPath": folder_path, "fileName": filename,
                  "options": '{"access": "PRIVATE", "overwrite": false}'})
        return HubSpotFile.model_validate(data)

    async def files_named(self, name: str) -> list[HubSpotFile]:
        data = await self.json("GET", "/files/v3/files/search", params={"name": name})
        return FilePage.model_validate(data).results

    async def account_details(self) -> AccountDetails:
        return AccountDetails.model_validate(await self.json("GET", "/account-info/v3/details"))
