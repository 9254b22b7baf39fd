"""The logging modes over the operator API (``/v1/events/{id}/...``).

* ``POST /v1/events/{id}/log`` ``{"app": "clio", "contact": "7001"}`` — log the
  event to one app by hand (``contact`` optional; required for an unresolved one);
* ``POST /v1/events/{id}/contact`` ``{"app": "clio", "contact": "7001"}`` — choose
  the contact of an unresolved event among its candidates, and log it;
* ``POST /v1/events/{id}/notes`` ``{"apps": {"clio": ["7001"]}, "text": "...",
  "started_at": "2026-03-02T10:01:00Z"}`` — notes taken during a call (delayed
  logging; ``apps`` may also be a list of app names; ``started_at`` defaults to now);
* ``DELETE /v1/events/{id}/notes`` — cancel them.

``{id}`` is the source's event id or the ledger's (as the operator API lists it);
``?tenant=`` narrows the lookup when an operator acts for several firms. Every
endpoint needs an operator's bearer token allowed for the event's tenant. Refusals
are ``{"error": {"field", "problem"}}`` with 404 (no such event), 409 (already
logged, being logged), 410 (erased) or 422 (a bad app, contact or notes).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from callbridge.models import Outcome
from callbridge.modes import ManualRefused
from callbridge.modes.manual import log_manually
from callbridge.modes.notes import add_notes, cancel_notes
from callbridge.modes.refs import find_event
from callbridge.serve.auth import ApiError, Operator, authorise, guarded, require_operator
from callbridge.settings_base import KEY_PATTERN

__all__ = ["routes"]

#: The largest request body these endpoints read (bytes).
MAX_BODY = 64 * 1024


async def _body(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, "body", f"is larger than {MAX_BODY} bytes")
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise ApiError(400, "body", "is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body", "must be a JSON object")
    for key in data:
        if key not in allowed:
            raise ApiError(400, str(key)[:40], "is not a field of this request")
    return data


def _text(data: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 200:
        raise ApiError(422, name, "must be a string of 1 to 200 characters")
    return value


def _outcome(event_pk: int, app: str, outcome: Outcome) -> dict[str, Any]:
    return {"event": event_pk, "app": app, "status": outcome.status.value,
            "reason": outcome.reason, "message": outcome.message,
            "records": [{"kind": r.kind, "id": r.id, "step": r.step} for r in outcome.records],
            "candidates": [{"id": c.id, "name": c.name} for c in outcome.candidates]}


def routes(state: Any) -> list[BaseRoute]:
    """The manual, contact-choice and notes endpoints."""
    engine = state.engine

    async def event_for(request: Request) -> tuple[int, str, Operator]:
        """The event the path names, once the operator may act for its tenant."""
        operator = await require_operator(request, state)
        tenant = request.query_params.get("tenant")
        if tenant is not None:
            if len(tenant) > 100 or not re.match(KEY_PATTERN, tenant):
                raise ApiError(400, "tenant", "is not valid: 1 to 100 letters, digits, '.', "
                                              "'_' or '-'")
            authorise(state, operator, tenant)
        elif operator.tenants is not None and len(operator.tenants) == 1:
            tenant = next(iter(operator.tenants))
        try:
            pk, event = await find_event(engine, request.path_params["event"], tenant=tenant)
        except ManualRefused as exc:
            raise ApiError(exc.status, exc.field, exc.problem) from None
        authorise(state, operator, event.tenant)
        return pk, event.tenant, operator

    async def log(request: Request) -> Response:
        pk, tenant, _ = await event_for(request)
        data = await _body(request, frozenset({"app", "contact"}))
        app = _text(data, "app", required=True)
        assert app is not None
        outcome = await _refusing(log_manually(engine, f"#{pk}", app,
                                               _text(data, "contact", required=False),
                                               tenant=tenant))
        return JSONResponse(_outcome(pk, app, outcome))

    async def choose(request: Request) -> Response:
        pk, tenant, _ = await event_for(request)
        data = await _body(request, frozenset({"app", "contact"}))
        app, contact = _text(data, "app", required=True), _text(data, "contact", required=True)
        assert app is not None and contact is not None
        view = await engine.db(engine.ledger.find_delivery, tenant, app, pk)
        if view is None or view.status != "unresolved":
            raise ApiError(409, "app", "the event is not waiting for a contact to be chosen "
                                       "in this app")
        if contact not in {c.id for c in view.candidates}:
            raise ApiError(422, "contact", "is not one of the event's candidates")
        outcome = await _refusing(log_manually(engine, f"#{pk}", app, contact, tenant=tenant))
        return JSONResponse(_outcome(pk, app, outcome))

    async def notes(request: Request) -> Response:
        pk, tenant, _ = await event_for(request)
        if request.method == "DELETE":
            changed = await _refusing(cancel_notes(engine, f"#{pk}", tenant=tenant))
            return JSONResponse({"event": pk, "cancelled": True, "changed": changed})
        data = await _body(request, frozenset({"apps", "text", "started_at"}))
        apps = _apps(data.get("apps"))
        text = data.get("text")
        if not isinstance(text, str):
            raise ApiError(422, "text", "must be a string")
        started = _started(data.get("started_at")) or engine.clock.now()
        done = await _refusing(add_notes(engine, f"#{pk}", apps, text, started, tenant=tenant))
        return JSONResponse({"event": pk, "apps": done})

    base = "/v1/events/{event}"
    return [
        Route(base + "/log", guarded(log), methods=["POST"]),
        Route(base + "/contact", guarded(choose), methods=["POST"]),
        Route(base + "/notes", guarded(notes), methods=["POST", "DELETE"]),
    ]


async def _refusing(call: Any) -> Any:
    """Await a modes call; its refusal becomes the API's JSON error."""
    try:
        return await call
    except ManualRefused as exc:
        raise ApiError(exc.status, exc.field, exc.problem) from None


def _apps(value: Any) -> dict[str, list[str]]:
    if isinstance(value, list):
        value = {name: [] for name in value}
    if not isinstance(value, dict) or not value or len(value) > 20:
        raise ApiError(422, "apps", "must name 1 to 20 apps: a list of names, or an object "
                                    "of app name to a list of contact ids")
    out: dict[str, list[str]] = {}
    for app, ids in value.items():
        if not isinstance(ids, list) or len(ids) > 20 or not all(
                isinstance(i, str) and 1 <= len(i) <= 200 for i in ids):
            raise ApiError(422, "apps", "each app's contacts must be a list of up to 20 ids")
        out[str(app)] = ids
    return out


def _started(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ApiError(422, "started_at", "must be an ISO 8601 time with its UTC offset "
                                          "(e.g. 2026-03-02T10:01:00Z)")
    return when
