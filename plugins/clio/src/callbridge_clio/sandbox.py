"""An emulator of the subset of Clio Manage API v4 the plugin uses, as an ASGI app.

It answers as Clio's published API reference specifies: the ``{"data": ...}``
envelope, ``fields`` selection (an unknown field is a 400), cursor paging with
``meta.paging.next`` URLs, OAuth 2.0 (authorization code and refresh token),
``401 invalid_token``, the three-step document upload with a pre-signed
storage URL, ``external_properties`` filters, and a 422 for a Person without
names. State is in memory; :class:`SandboxState` seeds it. Wrapped in the
host's :class:`~callbridge.faults.FaultInjector` for latency, 429s, 5xx and
dropped connections.

Run it with ``callbridge sandbox clio --port 8765``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from callbridge.faults import FaultInjector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

API = "/api/v4"

# The fields each resource answers with; anything else in `fields` is a 400.
KNOWN_FIELDS: dict[str, set[str]] = {
    "contact": {"id", "etag", "name", "first_name", "last_name", "type", "created_at", "updated_at",
                "phone_numbers", "email_addresses", "is_client", "primary_phone_number",
                "custom_field_values"},
    "matter": {"id", "etag", "display_number", "description", "status", "client", "open_date",
               "close_date", "pending_date", "updated_at", "created_at", "custom_field_values"},
    "relationship": {"id", "description", "contact", "matter"},
    "user": {"id", "name", "first_name", "last_name", "email", "enabled"},
    "communication": {"id", "etag", "type", "subject", "body", "received_at", "date", "matter",
                      "senders", "receivers", "external_properties", "created_at", "updated_at",
                      "time_entries_count"},
    "activity": {"id", "etag", "type", "date", "quantity", "communication", "matter", "user",
                 "non_billable", "note", "activity_description", "created_at"},
    "document": {"id", "etag", "name", "parent", "communication", "external_properties",
                 "latest_document_version", "created_at", "content_type"},
    "folder": {"id", "name", "parent", "created_at"},
    "custom_field": {"id", "name", "field_type", "parent_type", "displayed", "deleted"},
    "activity_description": {"id", "name", "type"},
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


class FieldsError(ValueError):
    pass


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


def shape(record: dict[str, Any], fields: dict[str, set[str] | None], kind: str) -> dict[str, Any]:
    check_fields(fields, kind)
    out: dict[str, Any] = {}
    for name, nested in fields.items():
        value = record.get(name)
        if nested is not None and value is not None:
            if isinstance(value, list):
                value = [{k: v for k, v in item.items() if k in nested} for item in value]
            elif isinstance(value, dict):
                value = {k: v for k, v in value.items() if k in nested}
        out[name] = value
    return out


@dataclass
class SandboxState:
    """In-memory Clio data. Seed it with the ``add_*`` methods; read it back in tests."""

    host: str = "https://app.clio.com"
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    token_lifetime: int = 2592000
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    matters: dict[int, dict[str, Any]] = field(default_factory=dict)
    relationships: dict[int, dict[str, Any]] = field(default_factory=dict)
    communications: dict[int, dict[str, Any]] = field(default_factory=dict)
    activities: dict[int, dict[str, Any]] = field(default_factory=dict)
    documents: dict[int, dict[str, Any]] = field(default_factory=dict)
    folders: dict[int, dict[str, Any]] = field(default_factory=dict)
    custom_fields: dict[int, dict[str, Any]] = field(default_factory=dict)
    activity_descriptions: dict[int, dict[str, Any]] = field(default_factory=dict)
    storage: dict[str, bytes] = field(default_factory=dict)
    storage_requests: list[dict[str, Any]] = field(default_factory=list)
    storage_down: bool = False  # the storage answers 503 (an upload that keeps failing)
    # Reads of an unfinished document leave out its put_url: whether Clio hands the
    # URL out again after the create is not documented.
    put_url_on_create_only: bool = False
    # The most records a page holds. Clio's cap is 200; a smaller one lets a test page
    # through a few seeded records and see `meta.paging.next` cursors.
    max_page_size: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (epoch)
    refresh_tokens: dict[str, int] = field(default_factory=dict)  # refresh token -> user id
    codes: dict[str, tuple[int, str]] = field(default_factory=dict)  # code -> (user, redirect_uri)
    authorised_user: int | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    # --- seeding ---------------------------------------------------------------------

    def add_user(self, name: str, email: str, *, authorised: bool = False) -> int:
        uid = self.next_id()
        first, _, last = name.partition(" ")
        self.users[uid] = {"id": uid, "name": name, "first_name": first, "last_name": last,
                           "email": email, "enabled": True}
        if authorised or self.authorised_user is None:
            self.authorised_user = uid
        return uid

    def add_contact(self, first: str, last: str, phones: list[str] = (),  # type: ignore[assignment]
                    emails: list[str] = (), *, updated_at: str | None = None,  # type: ignore[assignment]
                    custom_fields: dict[int, str] | None = None) -> int:
        cid = self.next_id()
        stamp = updated_at or _now()
        self.contacts[cid] = {
            "id": cid, "etag": f'"{cid}-1"', "type": "Person", "first_name": first, "last_name": last,
            "name": f"{first} {last}".strip(), "created_at": stamp, "updated_at": stamp,
            "is_client": True,
            "phone_numbers": [{"id": self.next_id(), "number": p, "name": "Work", "primary": i == 0}
                              for i, p in enumerate(phones)],
            "email_addresses": [{"id": self.next_id(), "address": e, "name": "Work", "primary": i == 0}
                                for i, e in enumerate(emails)],
            "custom_field_values": self._cf_values(custom_fields),
        }
        return cid

    def add_matter(self, client_id: int, description: str, *, status: str = "Open",
                   close_date: str | None = None, custom_fields: dict[int, str] | None = None,
                   related: dict[int, str] | None = None) -> int:
        """A matter of ``client_id``; ``related`` maps contact ids to their role on it."""
        mid = self.next_id()
        client = self.contacts[client_id]
        self.matters[mid] = {
            "id": mid, "etag": f'"{mid}-1"', "display_number": f"{mid:05d}-{client['last_name']}",
            "description": description, "status": status,
            "client": {"id": client_id, "name": client["name"]}, "open_date": "2026-01-05",
            "close_date": close_date, "pending_date": None, "created_at": _now(), "updated_at": _now(),
            "custom_field_values": self._cf_values(custom_fields)}
        for contact_id, role in (related or {}).items():
            self.relate(contact_id, mid, role)
        return mid

    def relate(self, contact_id: int, matter_id: int, description: str = "Related party") -> int:
        rid = self.next_id()
        m = self.matters[matter_id]
        self.relationships[rid] = {
            "id": rid, "description": description,
            "contact": {"id": contact_id, "name": self.contacts[contact_id]["name"]},
            "matter": {k: m[k] for k in ("id", "display_number", "description", "status")}}
        return rid

    def add_custom_field(self, name: str, parent_type: str, field_type: str = "checkbox") -> int:
        fid = self.next_id()
        self.custom_fields[fid] = {"id": fid, "name": name, "field_type": field_type,
                                   "parent_type": parent_type, "displayed": True, "deleted": False}
        return fid

    def add_activity_description(self, name: str) -> int:
        aid = self.next_id()
        self.activity_descriptions[aid] = {"id": aid, "name": name, "type": "User"}
        return aid

    def issue_token(self, user_id: int | None = None, *, lifetime: int | None = None,
                    access_token: str | None = None) -> dict[str, Any]:
        """A token pair for a user, as /oauth/token would answer.

        ``access_token`` fixes the access token's value (a test client's placeholder
        credential); by default it is random.
        """
        uid = user_id or self.authorised_user
        assert uid is not None, "add a user first"
        access, refresh = access_token or secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        life = lifetime if lifetime is not None else self.token_lifetime
        self.tokens[access] = time.time() + life
        self.refresh_tokens[refresh] = uid
        return {"token_type": "bearer", "access_token": access, "expires_in": life,
                "refresh_token": refresh}

    def expire_tokens(self) -> None:
        for token in self.tokens:
            self.tokens[token] = 0.0

    def _cf_values(self, values: dict[int, str] | None) -> list[dict[str, Any]]:
        out = []
        for fid, value in (values or {}).items():
            f = self.custom_fields[fid]
            out.append({"id": f"{f['field_type']}-{fid}", "value": value, "field_name": f["name"],
                        "field_type": f["field_type"], "custom_field": {"id": fid}})
        return out


def create_app(state: SandboxState | None = None, *, faults: bool = True) -> Any:
    """The sandbox as an ASGI app (wrapped in the fault injector unless ``faults=False``).

    ``app.state.clio`` (or ``.app.state.clio`` through the injector) is the SandboxState.
    """
    st = state or SandboxState()

    def authorised(request: Request) -> int | None:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        expiry = st.tokens.get(token)
        if expiry is None or expiry < time.time():
            return None
        return st.authorised_user

    def unauthorised() -> JSONResponse:
        return JSONResponse({"error": "invalid_token", "error_description":
                             "The access token provided is expired, revoked, malformed or invalid "
                             "for other reasons."}, status_code=401)

    def log(request: Request) -> None:
        st.requests.append({"method": request.method, "path": request.url.path,
                            "query": dict(request.query_params),
                            "api_version": request.headers.get("x-api-version")})

    def page(request: Request, items: list[dict[str, Any]], kind: str) -> JSONResponse:
        q = request.query_params
        fields = parse_fields(q.get("fields"))
        check_fields(fields, kind)
        limit = min(int(q.get("limit", "200")), st.max_page_size)
        offset = int(base64.urlsafe_b64decode(q["page_token"]).decode()) if "page_token" in q else 0
        order = q.get("order", "id(asc)")
        reverse = order.endswith("(desc)")
        items = sorted(items, key=lambda r: r["id"], reverse=reverse)
        chunk = items[offset:offset + limit]
        meta: dict[str, Any] = {"paging": {}, "records": len(items)}
        if offset + limit < len(items):
            params = [(k, v) for k, v in q.multi_items() if k != "page_token"]
            params.append(("page_token", base64.urlsafe_b64encode(str(offset + limit).encode()).decode()))
            meta["paging"]["next"] = f"{st.host}{request.url.path}?{urlencode(params)}"
        return JSONResponse({"data": [shape(r, fields, kind) for r in chunk], "meta": meta})

    def one(request: Request, record: dict[str, Any], kind: str, status: int = 200) -> JSONResponse:
        return JSONResponse({"data": shape(record, parse_fields(request.query_params.get("fields")),
                                           kind)}, status_code=status)

    def since(items: list[dict[str, Any]], request: Request, key: str, stamp: str) -> list[dict[str, Any]]:
        value = request.query_params.get(key)
        if not value:
            return items
        limit = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return [r for r in items if datetime.fromisoformat(r[stamp].replace("Z", "+00:00")) >= limit]

    def by_property(items: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
        name = request.query_params.get("external_property_name")
        value = request.query_params.get("external_property_value")
        if name is None:
            return items
        return [r for r in items if any(p["name"] == name and (value is None or p["value"] == value)
                                        for p in r.get("external_properties", []))]

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.json()
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
            raise FieldsError("the request body must be {\"data\": {...}}")
        data: dict[str, Any] = raw["data"]
        return data

    def api(handler: Any) -> Any:
        async def wrapped(request: Request) -> Response:
            log(request)
            if authorised(request) is None:
                return unauthorised()
            try:
                return await handler(request)  # type: ignore[no-any-return]
            except FieldsError as exc:
                return _error(400, "BadRequest", str(exc))
            except KeyError:
                return _error(404, "RecordNotFound", "The record could not be found.")
        return wrapped

    # --- contacts --------------------------------------------------------------------

    async def contacts(request: Request) -> Response:
        if request.method == "POST":
            data = await body(request)
            if data.get("type") not in ("Person", "Company"):
                return _error(422, "UnprocessableEntity", "type must be Person or Company")
            if data["type"] == "Person" and not (data.get("first_name") or data.get("last_name")):
                return _error(422, "UnprocessableEntity", "A Person needs a first or last name.")
            cid = st.add_contact(data.get("first_name") or "", data.get("last_name") or "",
                                 [p["number"] for p in data.get("phone_numbers", [])],
                                 [e["address"] for e in data.get("email_addresses", [])])
            return one(request, st.contacts[cid], "contact", 201)
        q = request.query_params
        items = list(st.contacts.values())
        if "query" in q:
            needle = q["query"].lower()
            items = [c for c in items if needle in c["name"].lower()
                     or any(needle in p["number"].lower() for p in c["phone_numbers"])
                     or any(needle in e["address"].lower() for e in c["email_addresses"])]
        if "type" in q:
            items = [c for c in items if c["type"] == q["type"]]
        ids = q.getlist("ids[]")
        if ids:
            items = [c for c in items if str(c["id"]) in ids]
        items = since(items, request, "updated_since", "updated_at")
        items = since(items, request, "created_since", "created_at")
        return page(request, items, "contact")

    async def contact(request: Request) -> Response:
        return one(request, st.contacts[int(request.path_params["id"])], "contact")

    # --- matters and relationships ---------------------------------------------------

    async def matters(request: Request) -> Response:
        q = request.query_params
        items = list(st.matters.values())
        if "client_id" in q:
            items = [m for m in items if str(m["client"]["id"]) == q["client_id"]]
        if "status" in q:
            wanted = {s.strip().lower() for s in q["status"].split(",")}
            items = [m for m in items if m["status"].lower() in wanted]
        ids = q.getlist("ids[]")
        if ids:
            items = [m for m in items if str(m["id"]) in ids]
        items = since(items, request, "updated_since", "updated_at")
        return page(request, items, "matter")

    async def matter(request: Request) -> Response:
        return one(request, st.matters[int(request.path_params["id"])], "matter")

    async def relationships(request: Request) -> Response:
        q = request.query_params
        items = list(st.relationships.values())
        if "contact_id" in q:
            items = [r for r in items if str(r["contact"]["id"]) == q["contact_id"]]
        if "matter_id" in q:
            items = [r for r in items if str(r["matter"]["id"]) == q["matter_id"]]
        for r in items:  # the nested matter's status as it stands now
            r["matter"]["status"] = st.matters[r["matter"]["id"]]["status"]
        return page(request, items, "relationship")

    # --- users -----------------------------------------------------------------------

    async def users(request: Request) -> Response:
        items = [u for u in st.users.values() if u["enabled"]]
        return page(request, items, "user")

    async def who_am_i(request: Request) -> Response:
        return one(request, st.users[authorised(request) or 0], "user")

    # --- communications and activities -----------------------------------------------

    async def communications(request: Request) -> Response:
        if request.method == "POST":
            data = await body(request)
            for need in ("type", "subject", "body", "received_at"):
                if not data.get(need):
                    return _error(422, "UnprocessableEntity", f"{need} is required")
            if len(data.get("external_properties", [])) > 5:
                return _error(422, "UnprocessableEntity", "at most 5 external properties")
            cid = st.next_id()
            st.communications[cid] = {
                "id": cid, "etag": f'"{cid}-1"', "type": data["type"], "subject": data["subject"],
                "body": data["body"], "received_at": data["received_at"],
                "date": data["received_at"][:10], "matter": data.get("matter"),
                "senders": data.get("senders", []), "receivers": data.get("receivers", []),
                "external_properties": data.get("external_properties", []),
                "created_at": _now(), "updated_at": _now(), "time_entries_count": 0}
            return one(request, st.communications[cid], "communication", 201)
        q = request.query_params
        items = by_property(list(st.communications.values()), request)
        if "matter_id" in q:
            items = [c for c in items if (c.get("matter") or {}).get("id") == int(q["matter_id"])]
        return page(request, items, "communication")

    async def communication(request: Request) -> Response:
        record = st.communications[int(request.path_params["id"])]
        if request.method == "PATCH":
            data = await body(request)
            for key in ("subject", "body", "matter", "external_properties"):
                if key in data:
                    record[key] = data[key]
            record["updated_at"] = _now()
            record["etag"] = f'"{record["id"]}-{secrets.token_hex(2)}"'
        return one(request, record, "communication")

    async def activities(request: Request) -> Response:
        if request.method == "POST":
            data = await body(request)
            if data.get("type") not in ("TimeEntry", "ExpenseEntry") or not data.get("date"):
                return _error(422, "UnprocessableEntity", "type and date are required")
            aid = st.next_id()
            st.activities[aid] = {
                "id": aid, "etag": f'"{aid}-1"', "type": data["type"], "date": data["date"],
                "quantity": data.get("quantity"), "communication": data.get("communication"),
                "matter": data.get("matter"), "user": data.get("user"),
                "non_billable": data.get("non_billable", False), "note": data.get("note"),
                "activity_description": data.get("activity_description"), "created_at": _now()}
            comm = (data.get("communication") or {}).get("id")
            if comm in st.communications:
                st.communications[comm]["time_entries_count"] += 1
            return one(request, st.activities[aid], "activity", 201)
        q = request.query_params
        items = list(st.activities.values())
        if "communication_id" in q:
            items = [a for a in items if (a.get("communication") or {}).get("id") == int(q["communication_id"])]
        return page(request, items, "activity")

    async def activity_descriptions(request: Request) -> Response:
        return page(request, list(st.activity_descriptions.values()), "activity_description")

    # --- documents, folders and storage ----------------------------------------------

    async def documents(request: Request) -> Response:
        if request.method == "POST":
            data = await body(request)
            parent = data.get("parent") or {}
            if not data.get("name") or parent.get("type") not in ("Matter", "Contact", "Folder"):
                return _error(422, "UnprocessableEntity", "name and parent{id,type} are required")
            did, uuid = st.next_id(), secrets.token_hex(16)
            signature = hashlib.sha256(f"{uuid}:{st.client_secret}".encode()).hexdigest()
            st.documents[did] = {
                "id": did, "etag": f'"{did}-1"', "name": data["name"], "parent": parent,
                "communication": {"id": data["communication_id"]} if data.get("communication_id") else None,
                "external_properties": data.get("external_properties", []),
                "content_type": data.get("content_type", "application/pdf"), "created_at": _now(),
                "latest_document_version": {
                    "uuid": uuid, "fully_uploaded": False,
                    "put_url": f"{st.host}/storage/{uuid}?X-Amz-Expires=600&X-Amz-Signature={signature}",
                    "put_headers": [{"name": "Content-Type", "value": data.get("content_type", "application/pdf")},
                                    {"name": "x-amz-server-side-encryption", "value": "AES256"}]}}
            return one(request, st.documents[did], "document", 201)
        q = request.query_params
        items = by_property(list(st.documents.values()), request)
        if q.get("show_uncompleted") != "true":
            items = [d for d in items if d["latest_document_version"]["fully_uploaded"]]
        if st.put_url_on_create_only:
            items = [{**d, "latest_document_version": {
                k: v for k, v in d["latest_document_version"].items() if k != "put_url"}}
                for d in items]
        return page(request, items, "document")

    async def document(request: Request) -> Response:
        record = st.documents[int(request.path_params["id"])]
        if request.method == "PATCH":
            data = await body(request)
            version = record["latest_document_version"]
            if data.get("fully_uploaded"):
                if data.get("uuid") != version["uuid"] or version["uuid"] not in st.storage:
                    return _error(422, "UploadNotFoundError", "The uploaded file could not be found.")
                version["fully_uploaded"] = True
        return one(request, record, "document")

    async def folders(request: Request) -> Response:
        if request.method == "POST":
            data = await body(request)
            fid = st.next_id()
            st.folders[fid] = {"id": fid, "name": data["name"], "parent": data.get("parent"),
                               "created_at": _now()}
            return one(request, st.folders[fid], "folder", 201)
        q = request.query_params
        items = list(st.folders.values())
        if "parent_id" in q:
            items = [f for f in items if str((f.get("parent") or {}).get("id")) == q["parent_id"]]
        # A matter's or a contact's folders: those filed under it.
        for key, kind in (("matter_id", "Matter"), ("contact_id", "Contact")):
            if key in q:
                items = [f for f in items if (f.get("parent") or {}).get("type") == kind
                         and str(f["parent"].get("id")) == q[key]]
        if "query" in q:
            items = [f for f in items if q["query"].lower() in f["name"].lower()]
        return page(request, items, "folder")

    async def storage(request: Request) -> Response:
        uuid = request.path_params["uuid"]
        expected = hashlib.sha256(f"{uuid}:{st.client_secret}".encode()).hexdigest()
        st.storage_requests.append({"headers": dict(request.headers), "query": dict(request.query_params)})
        if st.storage_down:
            return Response("<Error><Code>ServiceUnavailable</Code></Error>", status_code=503,
                            media_type="application/xml")
        if "authorization" in request.headers:
            return Response("<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism "
                            "allowed</Message></Error>", status_code=400, media_type="application/xml")
        if request.query_params.get("X-Amz-Signature") != expected:
            return Response("<Error><Code>SignatureDoesNotMatch</Code></Error>", status_code=403,
                            media_type="application/xml")
        st.storage[uuid] = await request.body()
        return Response(status_code=200)

    # --- custom fields ---------------------------------------------------------------

    async def custom_fields(request: Request) -> Response:
        q = request.query_params
        items = list(st.custom_fields.values())
        if "parent_type" in q:
            items = [f for f in items if f["parent_type"].lower() == q["parent_type"].lower()]
        if "field_type" in q:
            items = [f for f in items if f["field_type"] == q["field_type"]]
        return page(request, items, "custom_field")

    # --- OAuth -----------------------------------------------------------------------

    async def authorize(request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != st.client_id or q.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        assert st.authorised_user is not None, "seed a user first"
        code = secrets.token_urlsafe(16)
        st.codes[code] = (st.authorised_user, q["redirect_uri"])
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}",
                                status_code=302)

    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("client_id") != st.client_id or form.get("client_secret") != st.client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            entry = st.codes.pop(str(form.get("code")), None)
            if entry is None or entry[1] != form.get("redirect_uri"):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            return JSONResponse(st.issue_token(entry[0]))
        if grant == "refresh_token":
            uid = st.refresh_tokens.get(str(form.get("refresh_token")))
            if uid is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            issued = st.issue_token(uid)
            # Clio keeps the refresh token: the answer carries none.
            st.refresh_tokens.pop(issued.pop("refresh_token"))
            return JSONResponse(issued)
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

    routes = [
        Route(f"{API}/contacts.json", api(contacts), methods=["GET", "POST"]),
        Route(f"{API}/contacts/{{id:int}}.json", api(contact)),
        Route(f"{API}/matters.json", api(matters)),
        Route(f"{API}/matters/{{id:int}}.json", api(matter)),
        Route(f"{API}/relationships.json", api(relationships)),
        Route(f"{API}/users.json", api(users)),
        Route(f"{API}/users/who_am_i.json", api(who_am_i)),
        Route(f"{API}/communications.json", api(communications), methods=["GET", "POST"]),
        Route(f"{API}/communications/{{id:int}}.json", api(communication), methods=["GET", "PATCH"]),
        Route(f"{API}/activities.json", api(activities), methods=["GET", "POST"]),
        Route(f"{API}/activity_descriptions.json", api(activity_descriptions)),
        Route(f"{API}/documents.json", api(documents), methods=["GET", "POST"]),
        Route(f"{API}/documents/{{id:int}}.json", api(document), methods=["GET", "PATCH"]),
        Route(f"{API}/folders.json", api(folders), methods=["GET", "POST"]),
        Route(f"{API}/custom_fields.json", api(custom_fields)),
        Route("/storage/{uuid}", storage, methods=["PUT"]),
        Route("/oauth/authorize", authorize),
        Route("/oauth/token", token, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.clio = st
    if not faults:
        return app
    injector = FaultInjector(app)
    injector.state = st  # type: ignore[attr-defined]
    return injector


def dump(state: SandboxState) -> str:
    """The sandbox's records as JSON, for debugging a test."""
    return json.dumps({"contacts": state.contacts, "matters": state.matters,
                       "communications": state.communications, "activities": state.activities,
                       "documents": state.documents}, indent=2, default=str)
