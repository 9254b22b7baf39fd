"""What every answer of the sandbox's API shares: the envelope, paging, filters, errors."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callbridge_clio.sandbox.fields import FieldsError, check_fields, parse_fields, shape
from callbridge_clio.sandbox.state import SandboxState

Handler = Callable[[Request], Awaitable[Response]]


class Refused(Exception):
    """An answer other than success, raised from deep in a handler."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


def enum(value: str | None, allowed: frozenset[str], what: str, *, status: int = 400) -> None:
    """A 400 (a query parameter) or 422 (a body) for a value outside Clio's enum."""
    if value is not None and value not in allowed:
        raise Refused(status, "BadRequest" if status == 400 else "UnprocessableEntity",
                      f"{what} must be one of {', '.join(sorted(allowed))}")


async def body(request: Request) -> dict[str, Any]:
    raw = await request.json()
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        raise FieldsError("the request body must be {\"data\": {...}}")
    data: dict[str, Any] = raw["data"]
    return data


def one(request: Request, record: dict[str, Any], kind: str, status: int = 200) -> JSONResponse:
    return JSONResponse({"data": shape(record, parse_fields(request.query_params.get("fields")),
                                       kind)}, status_code=status)


def page(st: SandboxState, request: Request, items: list[dict[str, Any]], kind: str, *,
         orderable: bool = True) -> JSONResponse:
    """A list answer. Cursor paging, as Clio: only when the list is ordered by ``id(asc)``
    (an endpoint without an ``order`` parameter is); a ``next`` URL on the sandbox's own
    host, holding the request's parameters and a page token (the last id answered).
    Unordered, the first page comes back without a cursor, and a page token is a 400."""
    q = request.query_params
    fields = parse_fields(q.get("fields"))
    check_fields(fields, kind)
    try:
        limit = max(1, min(int(q.get("limit", "200")), st.max_page_size))
    except ValueError:
        raise Refused(400, "BadRequest", "limit must be a number") from None
    by_cursor = not orderable or q.get("order") == "id(asc)"
    after = 0
    if "page_token" in q:
        if not by_cursor:
            raise Refused(400, "BadRequest", "cursor pagination requires order=id(asc)")
        try:
            after = int(base64.urlsafe_b64decode(q["page_token"]).decode())
        except ValueError:
            raise Refused(400, "BadRequest", "page_token is invalid") from None
    order = q.get("order", "id(asc)")
    items = sorted(items, key=lambda r: r["id"], reverse=order == "id(desc)")
    if by_cursor:
        items = [r for r in items if r["id"] > after]
    chunk = items[:limit]
    meta: dict[str, Any] = {"paging": {}, "records": len(items)}
    if by_cursor and len(items) > limit:
        params = [(k, v) for k, v in q.multi_items() if k != "page_token"]
        token = base64.urlsafe_b64encode(str(chunk[-1]["id"]).encode()).decode()
        params.append(("page_token", token))
        meta["paging"]["next"] = f"{st.host}{request.url.path}?{urlencode(params)}"
    return JSONResponse({"data": [shape(r, fields, kind) for r in chunk], "meta": meta})


def since(items: list[dict[str, Any]], request: Request, key: str,
          field: str) -> list[dict[str, Any]]:
    value = request.query_params.get(key)
    if not value:
        return items
    try:
        limit = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Refused(400, "BadRequest", f"{key} must be an ISO-8601 time") from None
    return [r for r in items
            if datetime.fromisoformat(str(r[field]).replace("Z", "+00:00")) >= limit]


def by_property(items: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
    name = request.query_params.get("external_property_name")
    value = request.query_params.get("external_property_value")
    if name is None:
        return items
    return [r for r in items if any(p["name"] == name and (value is None or p["value"] == value)
                                    for p in r.get("external_properties", []))]


def ids_filter(items: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
    ids = request.query_params.getlist("ids[]")
    return [r for r in items if str(r["id"]) in ids] if ids else items
