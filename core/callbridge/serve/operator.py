"""The operator API's read side and re-queueing (``/v1/operator/...``).

For a phone-system vendor's own interface: the events of the tenants an operator
may see with their outcome in each app, unresolved events with their candidate
contacts, dead deliveries, and ``POST .../requeue`` for a dead or failed one.
Every endpoint needs an operator's bearer token (:mod:`callbridge.serve.auth`).

What is shown is what ``callbridge history`` shows: event ids masked to their last
four characters (an id may be a phone number), no event contents, no phone
numbers, outcome messages as the ledger keeps them (redacted), records' ids, and
for an unresolved delivery its candidates' ids and names. Lists are newest first,
a page at a time: ``next_before`` is the cursor of the next page (None at the end).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from callbridge.ledger.listing import REQUEUEABLE, EventRow
from callbridge.ledger.types import AttemptView, DeliveryView
from callbridge.models import OutcomeStatus
from callbridge.serve.auth import ApiError, Operator, authorise, guarded, require_operator
from callbridge.serve.operator_models import (
    AttemptOut,
    CandidateOut,
    DeliveryOut,
    DeliveryPage,
    EventOut,
    EventPage,
    OutcomeOut,
    RecordOut,
    WhoAmIOut,
    dump,
    render,
)
from callbridge.settings import KEY_PATTERN

__all__ = ["attempt_out", "delivery_out", "event_out", "routes", "wake"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_STATUSES = frozenset(s.value for s in OutcomeStatus)


class OperatorState(Protocol):
    """What the operator API needs of the server's state."""

    @property
    def runtime(self) -> Any: ...

    @property
    def engine(self) -> Any: ...


def _outcome(v: DeliveryView) -> dict[str, Any]:
    return {
        "delivery": v.delivery_id, "app": v.app, "status": v.status, "reason": v.reason,
        "message": v.message, "mode": v.mode, "attempts": v.attempts,
        "records": [RecordOut(kind=r.kind, id=r.id, step=r.step) for r in v.records],
        "next_attempt_at": v.next_attempt_at if v.status in (
            "waiting", "parked", "accepted") else None,
        "deadline_at": v.deadline_at, "updated_at": v.updated_at,
        "candidates": [CandidateOut(id=c.id, name=c.name) for c in v.candidates],
    }


def attempt_out(a: AttemptView) -> AttemptOut:
    return AttemptOut(attempt=a.attempt, started_at=a.started_at, finished_at=a.finished_at,
                      status=a.status, reason=a.reason, message=a.message,
                      next_attempt_at=a.next_attempt_at)


def delivery_out(v: DeliveryView, attempts: Sequence[AttemptView] | None = None
                 ) -> DeliveryOut:
    """One delivery as the operator API answers it (with its attempts when given)."""
    return DeliveryOut(
        **_outcome(v), event=v.event_pk, tenant=v.tenant, source=v.source, kind=v.kind,
        event_id=v.masked_id, occurred_at=v.occurred_at,
        history=None if attempts is None else [attempt_out(a) for a in attempts])


def event_out(row: EventRow, deliveries: Collection[DeliveryView],
              attempts: Mapping[int, Sequence[AttemptView]] | None = None) -> EventOut:
    """One event with its outcome in each app it is delivered to."""
    return EventOut(
        event=row.event_pk, tenant=row.tenant, source=row.source, kind=row.kind,
        event_id=row.masked_id, occurred_at=row.occurred_at, received_at=row.received_at,
        revision=row.revision, erased=row.erased,
        outcomes={v.app: OutcomeOut(**_outcome(v), history=None if attempts is None else [
            attempt_out(a) for a in attempts.get(v.delivery_id, ())])
            for v in sorted(deliveries, key=lambda v: v.app)})


# --- query parameters ----------------------------------------------------------------


class _Query:
    """A list's query parameters, each checked; a bad or unknown one is a 400 naming it."""

    def __init__(self, request: Request, allowed: Collection[str]) -> None:
        self.params = request.query_params
        for name in self.params:
            if name not in allowed:
                raise ApiError(400, name, "is not a parameter of this list")

    def key(self, name: str) -> str | None:
        value = self.params.get(name)
        if value is None:
            return None
        if len(value) > 100 or not re.match(KEY_PATTERN, value):
            raise ApiError(400, name, "is not valid: 1 to 100 letters, digits, '.', '_' or '-'")
        return value

    def integer(self, name: str, *, low: int, high: int, default: int | None) -> int | None:
        value = self.params.get(name)
        if value is None:
            return default
        if not re.fullmatch(r"[0-9]{1,12}", value) or not low <= int(value) <= high:
            raise ApiError(400, name, f"must be a whole number from {low} to {high}")
        return int(value)

    def since(self) -> datetime | None:
        value = self.params.get("since")
        if value is None:
            return None
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ApiError(400, "since", "is not an ISO 8601 time "
                           "(e.g. 2026-03-02T09:00:00Z)") from None
        if when.tzinfo is None:
            raise ApiError(400, "since", "needs its UTC offset (e.g. Z or +01:00)")
        return when

    def statuses(self) -> frozenset[str] | None:
        value = self.params.get("status")
        if value is None:
            return None
        chosen = frozenset(part.strip() for part in value.split(","))
        if not chosen or not chosen <= _STATUSES:
            raise ApiError(400, "status", "must be one or more of "
                           + ", ".join(sorted(_STATUSES)) + " (comma-separated)")
        return chosen


_FILTERS = ("tenant", "app", "status", "since", "before", "limit")


def _scope(state: OperatorState, operator: Operator, query: _Query
           ) -> frozenset[str] | None:
    tenant = query.key("tenant")
    if tenant is None:
        return operator.tenants
    authorise(state, operator, tenant)
    return frozenset({tenant})


def _page(query: _Query) -> tuple[int | None, int]:
    before = query.integer("before", low=1, high=2**62, default=None)
    limit = query.integer("limit", low=1, high=MAX_LIMIT, default=DEFAULT_LIMIT)
    assert limit is not None
    return before, limit


def routes(state: OperatorState) -> list[BaseRoute]:
    """The operator API's routes (reads and re-queueing)."""
    ledger = state.engine.ledger

    async def db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await state.engine.db(fn, *args, **kwargs)

    async def whoami(request: Request) -> Response:
        """The operator the token belongs to, and its tenants."""
        operator = await require_operator(request, state)
        tenants: Any = "all" if operator.tenants is None else sorted(operator.tenants)
        return JSONResponse(dump(WhoAmIOut(operator=operator.name, tenants=tenants)))

    async def list_events(request: Request) -> Response:
        """Events newest first, each with its outcome per app."""
        operator = await require_operator(request, state)
        query = _Query(request, _FILTERS)
        tenants = _scope(state, operator, query)
        before, limit = _page(query)
        rows: list[EventRow] = await db(
            ledger.event_page, tenants=tenants, app=query.key("app"),
            statuses=query.statuses(), since=query.since(), before=before, limit=limit)
        views: list[DeliveryView] = await db(
            ledger.history, event_pks=[r.event_pk for r in rows], limit=10**6) if rows else []
        by_event: dict[int, list[DeliveryView]] = {}
        for v in views:
            by_event.setdefault(v.event_pk, []).append(v)
        return JSONResponse(dump(EventPage(
            events=[event_out(r, by_event.get(r.event_pk, ())) for r in rows],
            next_before=rows[-1].event_pk if len(rows) == limit else None)))

    async def one_event(request: Request) -> Response:
        """One event with its outcome per app and each delivery's attempts."""
        operator = await require_operator(request, state)
        _Query(request, ())
        event_pk = int(request.path_params["event"])
        row: EventRow | None = await db(ledger.event_row, event_pk)
        if row is None:
            raise ApiError(404, "event", "no such event")
        authorise(state, operator, row.tenant)
        views: list[DeliveryView] = await db(ledger.deliveries_of, event_pk)
        attempts = {v.delivery_id: await db(ledger.attempts, v.delivery_id) for v in views}
        return JSONResponse(dump(event_out(row, views, attempts)))

    def deliveries(fixed: frozenset[str] | None) -> Callable[[Request], Any]:
        async def list_deliveries(request: Request) -> Response:
            operator = await require_operator(request, state)
            query = _Query(request, _FILTERS if fixed is None else
                           [f for f in _FILTERS if f != "status"])
            tenants = _scope(state, operator, query)
            before, limit = _page(query)
            views: list[DeliveryView] = await db(
                ledger.delivery_page, tenants=tenants, app=query.key("app"),
                statuses=fixed if fixed is not None else query.statuses(),
                since=query.since(), before=before, limit=limit)
            return JSONResponse(dump(DeliveryPage(
                deliveries=[delivery_out(v) for v in views],
                next_before=views[-1].delivery_id if len(views) == limit else None)))
        return list_deliveries

    async def _delivery(request: Request) -> tuple[Operator, DeliveryView]:
        operator = await require_operator(request, state)
        _Query(request, ())
        delivery_id = int(request.path_params["delivery"])
        try:
            view: DeliveryView = await db(ledger.delivery, delivery_id)
        except KeyError:
            raise ApiError(404, "delivery", "no such delivery") from None
        authorise(state, operator, view.tenant)
        return operator, view

    async def one_delivery(request: Request) -> Response:
        """One delivery with its attempts."""
        _, view = await _delivery(request)
        attempts: list[AttemptView] = await db(ledger.attempts, view.delivery_id)
        return JSONResponse(dump(delivery_out(view, attempts)))

    async def requeue(request: Request) -> Response:
        """Re-queue a dead or failed delivery: pending again, with a new deadline."""
        _, view = await _delivery(request)
        if not await db(ledger.requeue_ended, view.delivery_id):
            now: DeliveryView = await db(ledger.delivery, view.delivery_id)
            raise ApiError(409, "delivery", _not_requeued(now.status))
        wake(state)
        after: DeliveryView = await db(ledger.delivery, view.delivery_id)
        return JSONResponse(dump(delivery_out(after)))

    document = render()

    async def openapi(request: Request) -> Response:
        """The operator API's OpenAPI document (as published with the documentation)."""
        return Response(document, media_type="application/json")

    prefix = "/v1/operator"
    return [
        Route(f"{prefix}/openapi.json", openapi, methods=["GET"]),
        Route(f"{prefix}/whoami", guarded(whoami), methods=["GET"]),
        Route(f"{prefix}/events", guarded(list_events), methods=["GET"]),
        Route(f"{prefix}/events/{{event:int}}", guarded(one_event), methods=["GET"]),
        Route(f"{prefix}/deliveries", guarded(deliveries(None)), methods=["GET"]),
        Route(f"{prefix}/unresolved", guarded(deliveries(frozenset({"unresolved"}))),
              methods=["GET"]),
        Route(f"{prefix}/dead", guarded(deliveries(frozenset({"dead"}))), methods=["GET"]),
        Route(f"{prefix}/deliveries/{{delivery:int}}", guarded(one_delivery), methods=["GET"]),
        Route(f"{prefix}/deliveries/{{delivery:int}}/requeue", guarded(requeue),
              methods=["POST"]),
    ]


def wake(state: OperatorState) -> None:
    """Tell this process's scheduler that work was queued (it may be sleeping until the
    next retry it knows of)."""
    scheduler = getattr(state.engine, "scheduler", None)
    if scheduler is not None and hasattr(scheduler, "wake"):
        scheduler.wake()


def _not_requeued(status: str) -> str:
    if status in ("logged", "accepted"):
        return f"is {status}: it is never logged twice"
    if status in ("pending", "waiting", "parked"):
        return (f"is {status}: it resumes on its own (only a dead or failed delivery is "
                "re-queued by hand)")
    return (f"is {status}: only a dead or failed delivery is re-queued "
            f"({', '.join(REQUEUEABLE)}); choose a contact or log it instead")
