"""The sandbox's HTTP side: Smokeball's paths, answers and rules, as an ASGI app."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from callbridge_smokeball.api import FILE_MARKER_KEY, from_ticks
from callbridge_smokeball.sandbox.dtos import BODY_KEYS, REQUIRED, problem
from callbridge_smokeball.sandbox.oauth import oauth_routes
from callbridge_smokeball.sandbox.search import SearchError, parse_terms, select
from callbridge_smokeball.sandbox.state import REQUEST_ID, SandboxState
from callbridge_smokeball.sandbox.webhooks import webhook_routes

Handler = Callable[[Request], Awaitable[Response]]

class _Bad(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def create_app(state: SandboxState | None = None) -> ASGIApp:
    """The sandbox as an ASGI app; ``app.state.smokeball`` is its :class:`SandboxState`."""
    st = state or SandboxState()

    # --- helpers -------------------------------------------------------------------------

    def link(kind: str, record_id: str) -> dict[str, Any]:
        return {"id": record_id, "href": f"{st.host}/{kind}/{record_id}", "relation": kind,
                "method": "GET"}

    def query(request: Request, allowed: set[str]) -> dict[str, list[str]]:
        """Query values by lower-case name (ASP.NET reads names case-insensitively)."""
        out: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            key = name.lower()
            if key not in allowed | {"offset", "limit"}:
                raise _Bad(f"unknown query parameter '{name[:30]}'")
            out.setdefault(key, []).append(value)
        return out

    def paged(request: Request, q: dict[str, list[str]], rows: list[dict[str, Any]]
              ) -> JSONResponse:
        try:
            offset = int(q.get("offset", ["0"])[0])
            limit = int(q.get("limit", [str(st.max_page_size)])[0])
        except ValueError:
            raise _Bad("Offset and Limit must be integers") from None
        if offset < 0 or not 1 <= limit <= 500:
            raise _Bad("Offset must be 0 or more and Limit 1 to 500")
        limit = min(limit, st.max_page_size)
        base = f"{st.host}{request.url.path}"

        def at(off: int) -> dict[str, Any]:
            return {"href": f"{base}?{urlencode({'limit': limit, 'offset': off})}"}

        size = len(rows)
        body: dict[str, Any] = {
            "href": f"{base}", "offset": offset, "limit": limit, "size": size,
            "first": at(0), "last": at(max(0, (size - 1) // limit * limit)),
            "value": [st.public(r) for r in rows[offset:offset + limit]]}
        if offset + limit < size:
            body["next"] = at(offset + limit)
        if offset > 0:
            body["previous"] = at(max(0, offset - limit))
        return JSONResponse(body)

    def since(q: dict[str, list[str]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if "updatedsince" not in q:
            return rows
        try:
            ticks = int(q["updatedsince"][0])
            from_ticks(ticks)
        except (ValueError, OverflowError):
            raise _Bad("UpdatedSince must be .NET ticks (an integer)") from None
        return [r for r in rows if r.get("_updated", 0) >= ticks]

    async def body_of(request: Request, kind: str) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise _Bad("the body is not JSON") from None
        if not isinstance(data, dict):
            raise _Bad("the body must be a JSON object")
        unknown = set(data) - BODY_KEYS[kind]
        if unknown:
            raise _Bad(f"unknown {kind} field(s): {', '.join(sorted(unknown))}")
        missing = REQUIRED.get(kind, set()) - {k for k, v in data.items() if v not in (None, "")}
        if missing:
            raise _Bad(f"required {kind} field(s) missing: {', '.join(sorted(missing))}")
        return data

    def find(kind: str, record_id: str, matter_id: str | None = None) -> dict[str, Any]:
        record = st.get(kind, record_id)
        if record is None or (matter_id is not None
                              and record.get("matterId", record.get("_matterId")) != matter_id):
            raise KeyError(record_id)
        return record

    def matter_or_404(matter_id: str) -> dict[str, Any]:
        return find("matters", matter_id)

    # --- contacts ----------------------------------------------------------------------

    def contact_texts(row: dict[str, Any], name: str) -> list[str]:
        person, company = row.get("person") or {}, row.get("company") or {}
        if name == "name":
            full = " ".join(p for p in (person.get("firstName"), person.get("lastName")) if p)
            return [full, person.get("firstName") or "", person.get("lastName") or "",
                    company.get("name") or ""]
        if name == "email":
            return [person.get("email") or "", company.get("email") or ""]
        numbers = [person.get("phone"), person.get("phone2"), person.get("cell"),
                   company.get("phone")]
        out = []
        for n in numbers:
            if n and n.get("number"):
                area = n.get("areaCode") or ""
                out += [n["number"], f"{area}{n['number']}", f"{area} {n['number']}"]
        return out

    async def contacts(request: Request) -> Response:
        if request.method == "POST":
            data = await body_of(request, "contact")
            if not (data.get("person") or data.get("company")):
                raise _Bad("a contact needs a person or a company")
            new = st.put("contacts", {**data, "isDeleted": False}, accepted=True)
            return JSONResponse(link("contacts", new), status_code=202)
        q = query(request, {"updatedsince", "excludedeletedcontacts", "type", "search", "sort",
                            "fields"})
        rows = since(q, st.rows("contacts"))
        if q.get("excludedeletedcontacts", ["false"])[0].lower() == "true":
            rows = [r for r in rows if not r.get("isDeleted")]
        rows = select(rows, parse_terms(q.get("search", []), {"name", "email", "phone"}),
                      contact_texts)
        if q.get("sort") == ["lastUpdated"]:
            rows.sort(key=lambda r: r.get("_updated", 0))
        return paged(request, q, rows)

    async def contact(request: Request) -> Response:
        record = find("contacts", request.path_params["id"])
        if request.method == "PUT":
            data = await body_of(request, "contact")
            record.update(data)
            st.touch(record, "contacts")
            return JSONResponse(link("contacts", record["id"]), status_code=202)
        return JSONResponse(st.public(record))

    # --- matters, staff, activity codes --------------------------------------------------

    async def matters(request: Request) -> Response:
        q = query(request, {"search", "mattertypeid", "contactid", "status", "islead", "type",
                            "updatedsince", "lastupdated", "sort", "fields"})
        rows = since(q, st.rows("matters"))
        if "contactid" in q:
            cid = q["contactid"][0]
            # The roles a Matter object lists: clients and other sides.
            rows = [m for m in rows if cid in {c["id"] for c in m.get("clients", [])}
                    | {c["id"] for c in m.get("otherSides", [])}]
        if "status" in q:
            wanted = {s.lower() for v in q["status"] for s in v.split(",")}
            rows = [m for m in rows if m.get("status", "").lower() in wanted]
        return paged(request, q, rows)

    async def staff(request: Request) -> Response:
        q = query(request, {"search", "fields"})

        def texts(row: dict[str, Any], name: str) -> list[str]:
            if name == "email":
                return [row.get("email") or ""]
            return [f"{row.get('firstName', '')} {row.get('lastName', '')}".strip()]

        rows = select(st.rows("staff"), parse_terms(q.get("search", []), {"email", "name"}), texts)
        return paged(request, q, rows)

    async def activitycodes(request: Request) -> Response:
        if request.method == "POST":
            data = await body_of(request, "activity")
            code = data.get("code") or ""
            if not code or len(code) > 20:
                raise _Bad("code is required and at most 20 characters")
            new = st.put("activitycodes", {**data, "isDeleted": False}, accepted=True)
            return JSONResponse(link("activitycodes", new), status_code=202)
        q = query(request, {"updatedsince"})
        return paged(request, q, since(q, st.rows("activitycodes")))

    async def activitycode(request: Request) -> Response:
        return JSONResponse(st.public(find("activitycodes", request.path_params["id"])))

    # --- fees, memos, files (on a matter), tasks -----------------------------------------

    async def fees(request: Request) -> Response:
        matter_id = matter_or_404(request.path_params["matterId"])["id"]
        if request.method == "POST":
            data = await body_of(request, "fee")
            code = (data.get("activityCode") or "").casefold()
            if code and not any((a.get("code") or "").casefold() == code and not a.get("isDeleted")
                                and not a.get("_lost") for a in st.data["activitycodes"].values()):
                raise _Bad("activityCode: no such activity code")
            new = st.put("fees", {**data, "matterId": matter_id, "isDeleted": False},
                         accepted=True)
            return JSONResponse(link("fees", new), status_code=202)
        q = query(request, {"updatedsince"})
        rows = [f for f in st.rows("fees") if f.get("matterId") == matter_id]
        return paged(request, q, since(q, rows))

    async def fee(request: Request) -> Response:
        record = find("fees", request.path_params["id"], request.path_params["matterId"])
        if request.method in ("PUT", "PATCH"):
            record.update(await body_of(request, "fee"))
            st.touch(record, "fees")
            return JSONResponse(link("fees", record["id"]), status_code=202)
        return JSONResponse(st.public(record))

    async def memos(request: Request) -> Response:
        matter_id = matter_or_404(request.path_params["matterId"])["id"]
        if request.method == "POST":
            data = await body_of(request, "memo")
            created = data.pop("createdDateUtc", None) or st.now().isoformat()
            new = st.put("memos", {**data, "plainText": data["text"], "matterId": matter_id,
                                   "createdDate": created, "isDeleted": False}, accepted=True)
            return JSONResponse(link("memos", new), status_code=202)
        q = query(request, set())
        return paged(request, q, [m for m in st.rows("memos") if m.get("matterId") == matter_id])

    async def memo(request: Request) -> Response:
        record = find("memos", request.path_params["id"], request.path_params["matterId"])
        if request.method == "PUT":
            data = await body_of(request, "memo")
            data.pop("createdDateUtc", None)
            record.update(data, plainText=data["text"])
            st.touch(record, "memos")
            return JSONResponse(link("memos", record["id"]), status_code=202)
        return JSONResponse(st.public(record))

    def task_record(data: dict[str, Any], record: dict[str, Any] | None = None) -> dict[str, Any]:
        """A TaskDto as a Task reads: links for the matter, the creator and assignees."""
        find("staff", data["staffId"])
        for assignee in data.get("assigneeIds") or []:
            find("staff", assignee)
        if data.get("matterId"):
            matter_or_404(data["matterId"])
        out = dict(record or {})
        out.update({k: v for k, v in data.items()
                    if k not in ("staffId", "assigneeIds", "matterId", "completedByStaffId")})
        out["createdBy"] = out.get("createdBy") or {"id": data["staffId"]}
        out["lastUpdatedBy"] = {"id": data["staffId"]}
        out["assignees"] = [{"id": a} for a in data.get("assigneeIds") or []]
        out["matter"] = {"id": data["matterId"]} if data.get("matterId") else None
        out["_matterId"] = data.get("matterId")
        return out

    async def tasks(request: Request) -> Response:
        if request.method == "POST":
            data = await body_of(request, "task")
            new = st.put("tasks", {**task_record(data), "isDeleted": False}, accepted=True)
            return JSONResponse(link("tasks", new), status_code=202)
        q = query(request, {"matterid", "iscompleted", "updatedsince", "lastupdated"})
        rows = since(q, st.rows("tasks"))
        if "matterid" in q:
            rows = [t for t in rows if t.get("_matterId") == q["matterid"][0]]
        return paged(request, q, rows)

    async def task(request: Request) -> Response:
        record = find("tasks", request.path_params["id"])
        if request.method == "PUT":
            data = await body_of(request, "task")
            record.update(task_record(data, record))
            st.touch(record, "tasks")
            return JSONResponse(link("tasks", record["id"]), status_code=202)
        return JSONResponse(st.public(record))

    async def files(request: Request) -> Response:
        matter_id = matter_or_404(request.path_params["matterId"])["id"]
        if request.method == "POST":
            data = await body_of(request, "file")
            if len(data["fileName"]) > 256 or "." not in data["fileName"]:
                raise _Bad("fileName must hold an extension and be at most 256 characters")
            file_id = st.new_id()
            signature = secrets.token_hex(8)
            st.put("files", {"id": file_id, "_matterId": matter_id, "matter": {"id": matter_id},
                             "name": data["fileName"], "_folderPath": data.get("folderPath"),
                             "isUploaded": False,
                             "additionalData": data.get("fileAdditionalData"),
                             "_signature": signature, "isDeleted": False}, accepted=True)
            url = f"{st.storage_host}/_storage/{file_id}?X-Amz-Signature={signature}"
            return JSONResponse({"fileId": file_id, "uploadUrl": url,
                                 "expiry": st.expiry()}, status_code=202)
        q = query(request, {"cursor", "sort", "search"})
        return paged(request, q, [f for f in st.rows("files") if f.get("_matterId") == matter_id])

    async def file(request: Request) -> Response:
        record = find("files", request.path_params["fileId"], request.path_params["matterId"])
        return JSONResponse(st.public(record))

    async def file_upload(request: Request) -> Response:
        """A fresh pre-signed URL for a file's content (a new version)."""
        record = find("files", request.path_params["fileId"], request.path_params["matterId"])
        record["_signature"] = secrets.token_hex(8)
        url = f"{st.storage_host}/_storage/{record['id']}?X-Amz-Signature={record['_signature']}"
        return JSONResponse({"fileId": record["id"], "uploadUrl": url,
                             "expiry": st.expiry()})

    # --- the gate: key, token, bucket, log -----------------------------------------------

    def gated(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            entry: dict[str, Any] = {"method": request.method, "path": request.url.path,
                     "query": list(request.query_params.multi_items()),
                     "request_id": request.headers.get("requestid"),
                     "user_id": request.headers.get("userid"), "status": 0,
                     "account": bool(request.scope.get("smokeball_account"))}
            st.requests.append(entry)
            token = REQUEST_ID.set(entry["request_id"])  # the webhooks a write causes carry it
            try:
                response = await _gate(request, handler)
            finally:
                REQUEST_ID.reset(token)
            entry["status"] = response.status_code
            if entry["request_id"]:
                response.headers["RequestId"] = entry["request_id"]
            return response
        return run

    async def _gate(request: Request, handler: Handler) -> Response:
        if not st.admit():
            headers = {"Retry-After": f"{st.retry_after:g}"} if st.retry_after else {}
            return JSONResponse({"message": "Too Many Requests"}, status_code=429,
                                headers=headers)
        if not hmac.compare_digest(request.headers.get("x-api-key", ""), st.api_key):
            return JSONResponse({"message": "Forbidden"}, status_code=403)
        auth = request.headers.get("authorization", "")
        if not (auth.lower().startswith("bearer ") and st.token_valid(auth[7:])):
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        try:
            return await handler(request)
        except _Bad as exc:
            return problem(400, "Bad Request", exc.detail)
        except SearchError as exc:
            return problem(400, "Bad Request", str(exc))
        except KeyError:
            return problem(404, "Not Found")

    routes = [
        *oauth_routes(st),
        Route("/contacts", gated(contacts), methods=["GET", "POST"]),
        Route("/contacts/{id}", gated(contact), methods=["GET", "PUT"]),
        Route("/matters", gated(matters), methods=["GET"]),
        Route("/staff", gated(staff), methods=["GET"]),
        Route("/activitycodes", gated(activitycodes), methods=["GET", "POST"]),
        Route("/activitycodes/{id}", gated(activitycode), methods=["GET"]),
        Route("/matters/{matterId}/fees", gated(fees), methods=["GET", "POST"]),
        Route("/matters/{matterId}/fees/{id}", gated(fee), methods=["GET", "PUT", "PATCH"]),
        Route("/matters/{matterId}/memos", gated(memos), methods=["GET", "POST"]),
        Route("/matters/{matterId}/memos/{id}", gated(memo), methods=["GET", "PUT"]),
        Route("/matters/{matterId}/documents/files", gated(files), methods=["GET", "POST"]),
        Route("/matters/{matterId}/documents/files/{fileId}", gated(file), methods=["GET"]),
        Route("/matters/{matterId}/documents/files/{fileId}/upload", gated(file_upload),
              methods=["GET"]),
        Route("/tasks", gated(tasks), methods=["GET", "POST"]),
        Route("/tasks/{id}", gated(task), methods=["GET", "PUT"]),
        *webhook_routes(st, gated),
    ]
    inner = Starlette(routes=routes)
    inner.state.smokeball = st
    return _AccountPrefix(inner, st)


class _AccountPrefix:
    """Client-credentials calls put the account id first in the path: it is taken off."""

    def __init__(self, app: Starlette, state: SandboxState) -> None:
        self.app = app
        self.state = app.state
        self.smokeball = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            prefix = f"/{self.smokeball.account_id}/"
            if scope["path"].startswith(prefix):
                scope = {**scope, "path": scope["path"][len(prefix) - 1:],
                         "raw_path": scope["path"][len(prefix) - 1:].encode(),
                         "smokeball_account": True}
        await self.app(scope, receive, send)


__all__ = ["FILE_MARKER_KEY", "create_app", "problem"]
