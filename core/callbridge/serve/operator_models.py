"""The operator API's answers as models, and its OpenAPI document built from them.

Every answer of :mod:`callbridge.serve.operator` is one of these models dumped to
JSON, so the published document (``operator-openapi.json``, served at
``GET /v1/operator/openapi.json``) is the shape the API answers with.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from callbridge import __version__
from callbridge.models import OutcomeStatus

__all__ = ["AttemptOut", "CandidateOut", "ConnectLinkOut", "DeliveryOut", "DeliveryPage",
           "ErrorOut", "EventOut", "EventPage", "OutcomeOut", "RecordOut", "WhoAmIOut",
           "document", "dump", "render"]

_OUT = ConfigDict(frozen=True, extra="forbid")


class RecordOut(BaseModel):
    """A record a delivery wrote in its app."""

    model_config = _OUT
    kind: str = Field(description="what was written, in the app's terms (communication, ...)")
    id: str = Field(description="its id in the app")
    step: str = Field(description="its key within the delivery")


class CandidateOut(BaseModel):
    """A contact an unresolved event may be logged to."""

    model_config = _OUT
    id: str = Field(description="the contact's id in the app")
    name: str | None = Field(description="the contact's name, as the app shows it")


class AttemptOut(BaseModel):
    """One attempt of a delivery."""

    model_config = _OUT
    attempt: int
    started_at: datetime | None
    finished_at: datetime
    status: str
    reason: str | None
    message: str | None = Field(description="one sentence, redacted: no numbers or secrets")
    next_attempt_at: datetime | None


class OutcomeOut(BaseModel):
    """An event's outcome in one app (its delivery)."""

    model_config = _OUT
    delivery: int = Field(description="the delivery's id")
    app: str
    status: OutcomeStatus = Field(description="the delivery's state")
    reason: str | None = Field(description="the sub-state or why: rate_limit, reauthorise, "
                                           "no_contact, deadline, ...")
    message: str | None = Field(description="one sentence, redacted: no numbers or secrets")
    mode: str = Field(description="auto, delayed, manual, digest...")
    attempts: int = Field(description="attempts made (waiting for a rate limit is not one)")
    records: list[RecordOut]
    next_attempt_at: datetime | None = Field(
        description="when it is due again (waiting, parked with a known time, accepted)")
    deadline_at: datetime | None = Field(description="when transient failures stop being retried")
    updated_at: datetime | None
    candidates: list[CandidateOut] = Field(description="for an unresolved delivery")
    history: list[AttemptOut] | None = Field(
        default=None, description="its attempts (one event or one delivery only)")


class DeliveryOut(OutcomeOut):
    """A delivery with its event's identity."""

    event: int = Field(description="the ledger's id of the event")
    tenant: str
    source: str
    kind: Literal["call", "sms", "fax"]
    event_id: str = Field(description="the source's event id, all but its last 4 characters "
                                      "hidden; (erased) once its contents are erased")
    occurred_at: datetime


class EventOut(BaseModel):
    """An event with its outcome in each app it is delivered to."""

    model_config = _OUT
    event: int = Field(description="the ledger's id of the event")
    tenant: str
    source: str
    kind: Literal["call", "sms", "fax"]
    event_id: str = Field(description="the source's event id, all but its last 4 characters "
                                      "hidden; (erased) once its contents are erased")
    occurred_at: datetime
    received_at: datetime
    revision: int = Field(description="how many copies of the event changed it")
    erased: bool = Field(description="its contents were erased (retention, a person's request)")
    outcomes: dict[str, OutcomeOut] = Field(description="by app; empty until it is final")


class EventPage(BaseModel):
    model_config = _OUT
    events: list[EventOut]
    next_before: int | None = Field(description="`before` of the next page; null at the end")


class DeliveryPage(BaseModel):
    model_config = _OUT
    deliveries: list[DeliveryOut]
    next_before: int | None = Field(description="`before` of the next page; null at the end")


class WhoAmIOut(BaseModel):
    model_config = _OUT
    operator: str
    tenants: list[str] | Literal["all"]


class ConnectLinkOut(BaseModel):
    model_config = _OUT
    url: str = Field(description="for the firm's administrator to open in a browser")
    tenant: str
    app: str
    expires_at: datetime
    redirect_uri: str = Field(description="to register with the app")


class ErrorDetail(BaseModel):
    model_config = _OUT
    field: str = Field(description="what is wrong (never the value sent)")
    problem: str


class ErrorOut(BaseModel):
    model_config = _OUT
    error: ErrorDetail


# --- the document ----------------------------------------------------------------------

_REF = "#/components/schemas/"
_ERRORS = {
    "400": "A parameter is malformed or unknown (`field` names it).",
    "401": "No operator token, or one no operator has.",
    "403": "The tenant is not among the operator's.",
    "404": "No such event, delivery, tenant or app.",
    "409": "The delivery's state does not allow it (or the app is not one a person connects).",
}
_FILTERS = [
    ("tenant", "one tenant (among the operator's); without it, all of the operator's",
     {"type": "string"}),
    ("app", "one app key", {"type": "string"}),
    ("status", "delivery states, comma-separated (dead,failed)", {"type": "string"}),
    ("since", "occurred at or after (ISO 8601 with its offset)",
     {"type": "string", "format": "date-time"}),
    ("before", "the cursor: `next_before` of the page before", {"type": "integer"}),
    ("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
]


def _query(names: list[str]) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "required": False, "description": d, "schema": s}
            for n, d, s in _FILTERS if n in names]


def _path(name: str, description: str, kind: str = "integer") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": kind}}


def _op(summary: str, answer: str, *, status: str = "200", parameters: list[Any] | None = None,
        errors: tuple[str, ...] = ("400", "401", "403")) -> dict[str, Any]:
    return {"summary": summary, "security": [{"operatorToken": []}],
            "parameters": parameters or [],
            "responses": {status: {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": _REF + answer}}}},
                **{code: {"description": _ERRORS[code], "content": {"application/json": {
                    "schema": {"$ref": _REF + "ErrorOut"}}}} for code in errors}}}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the operator API."""
    everything = [n for n, _, _ in _FILTERS]
    no_status = [n for n in everything if n != "status"]
    event = _path("event", "the ledger's id of the event")
    delivery = _path("delivery", "the delivery's id")
    paths = {
        "/v1/operator/whoami": {"get": _op("The operator the token belongs to", "WhoAmIOut",
                                           errors=("401",))},
        "/v1/operator/events": {"get": _op("Events, newest first, with their outcome per app",
                                           "EventPage", parameters=_query(everything))},
        "/v1/operator/events/{event}": {"get": _op(
            "One event, each app's outcome with its attempts", "EventOut", parameters=[event],
            errors=("401", "403", "404"))},
        "/v1/operator/deliveries": {"get": _op("Deliveries, newest first", "DeliveryPage",
                                               parameters=_query(everything))},
        "/v1/operator/unresolved": {"get": _op(
            "Unresolved deliveries with their candidate contacts", "DeliveryPage",
            parameters=_query(no_status))},
        "/v1/operator/dead": {"get": _op("Dead deliveries", "DeliveryPage",
                                         parameters=_query(no_status))},
        "/v1/operator/deliveries/{delivery}": {"get": _op(
            "One delivery with its attempts", "DeliveryOut", parameters=[delivery],
            errors=("401", "403", "404"))},
        "/v1/operator/deliveries/{delivery}/requeue": {"post": _op(
            "Re-queue a dead or failed delivery", "DeliveryOut", parameters=[delivery],
            errors=("401", "403", "404", "409"))},
        "/v1/operator/oauth/{app}/links": {"post": _op(
            "A connect link for a firm's administrator", "ConnectLinkOut", status="201",
            parameters=[_path("app", "the tenant's app key", "string"),
                        {"name": "tenant", "in": "query", "required": True,
                         "schema": {"type": "string"}},
                        {"name": "valid_minutes", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": 10080,
                                    "default": 60}}],
            errors=("400", "401", "403", "404", "409"))},
    }
    models: list[type[BaseModel]] = [EventPage, DeliveryPage, EventOut, DeliveryOut, WhoAmIOut,
                                     ConnectLinkOut, ErrorOut]
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=_REF + "{model}", mode="serialization")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {"title": "callbridge operator API", "version": __version__, "description": (
            "What happened to each event in each app, for the tenants an operator may act "
            "for; re-queueing; connect links. Lists are newest first, a page at a time.")},
        "paths": paths,
        "components": {
            "securitySchemes": {"operatorToken": {
                "type": "http", "scheme": "bearer", "description": (
                    "An operator's token (`callbridge operator-token`), admitted by the "
                    "server's settings (`[operators.NAME]`) for some tenants or all.")}},
            "schemas": dict(sorted(schemas.items())),
        },
    }


def render() -> str:
    """The document as the published file holds it."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def dump(model: BaseModel) -> dict[str, Any]:
    """``model`` as the API answers it: JSON values, ``history`` only where it was asked for."""
    def drop(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: drop(v) for k, v in node.items() if not (k == "history" and v is None)}
        if isinstance(node, list):
            return [drop(v) for v in node]
        return node
    out: dict[str, Any] = drop(model.model_dump(mode="json"))
    return out
