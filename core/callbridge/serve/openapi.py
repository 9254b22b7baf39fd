"""The intake's OpenAPI document (3.1), built from the event models and the intake's rules.

Published as ``intake-openapi.json`` with the documentation, and served at
``GET /v1/openapi.json``. The event schemas are those of ``callbridge schema``, with
``tenant`` optional (the source's tenant is used; another tenant is refused).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from callbridge import __version__
from callbridge.serve.intake import PATH, REASONS
from callbridge.settings import KEY_PATTERN
from callbridge.sources.native import MAX_EVENTS

_REF = "#/components/schemas/"
_PROBLEMS = {
    400: "The body is not JSON, or not an event or an array of them.",
    401: "The signature is missing, malformed, outside the replay window, or matches no key "
         "of the source.",
    403: "The body names another tenant than the source's.",
    404: "No such tenant, or no such source for it (the same answer for both).",
    408: "The body did not arrive within the server's time (`serve.read_timeout_seconds`).",
    413: "The body is larger than the server's limit (`serve.max_body_bytes`).",
    422: "An event is invalid: `field` names the first bad field, `problems` lists them all.",
    503: "The source's key, or its format's adapter, is missing on the server; or the "
         "ledger could not store the events (nothing kept: send them again).",
}


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.replace("#/$defs/", _REF) if k == "$ref" and isinstance(v, str)
                    else _rewrite(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def _event_schemas() -> dict[str, Any]:
    from callbridge.events import json_schema

    schema = json_schema()
    defs = _rewrite(schema.pop("$defs"))
    for name in ("CallEvent", "SmsEvent", "FaxEvent"):
        required = defs[name].get("required", [])
        defs[name]["required"] = [f for f in required if f != "tenant"]
    union = _rewrite({k: v for k, v in schema.items() if k in ("oneOf", "discriminator")})
    union["description"] = (
        "One call, SMS or fax (the format of `callbridge schema`). `tenant` and `source` may "
        "be left out: the URL's are used; a body naming another tenant is refused (403), "
        "another source (422).")
    defs["Event"] = union
    return dict(sorted(defs.items()))


def _error_schema() -> dict[str, Any]:
    pair: dict[str, Any] = {"type": "object", "required": ["field", "problem"], "properties": {
        "field": {"type": "string", "description": "where the problem is (never a value)"},
        "problem": {"type": "string"}}}
    inner = copy.deepcopy(pair)
    inner["properties"]["problems"] = {"type": "array", "items": pair,
                                       "description": "every problem, when there are several"}
    return {"type": "object", "required": ["error"], "properties": {"error": inner}}


def document() -> dict[str, Any]:
    """The OpenAPI document of ``POST /v1/sources/{tenant}/{source}`` and the health routes."""
    key = {"type": "string", "pattern": KEY_PATTERN, "maxLength": 100}
    errors = {str(status): {"description": _PROBLEMS[status] + f" Counted as `{REASONS[status]}`.",
                            "content": {"application/json": {"schema": {"$ref": _REF + "Error"}}}}
              for status in sorted(_PROBLEMS)}
    ack = {"type": "object", "required": ["received", "events"], "properties": {
        "received": {"type": "integer", "description": "how many events were stored"},
        "events": {"type": "array", "items": {
            "type": "object", "required": ["id", "kind", "result"], "properties": {
                "id": {"type": "string"}, "kind": {"enum": ["call", "sms", "fax"]},
                "result": {"enum": ["new", "duplicate", "revision"], "description":
                           "new; duplicate (nothing changed); revision (a later state or a "
                           "late detail of an event received before)"}}}}}}
    intake = {
        "summary": "Send events from a phone system",
        "description": (
            "Events are stored in the ledger (committed) before the answer: a 200 means they "
            "will be logged. A duplicate is acknowledged and changes nothing, so a sender may "
            "retry freely, signing each retry afresh. A refused request is answered with a 4xx "
            "error naming the field and the problem, and kept in the quarantine (`callbridge "
            "quarantine`); nothing of it is processed."),
        "operationId": "sendEvents",
        "security": [{"callbridgeSignature": []}],
        "parameters": [
            {"name": "tenant", "in": "path", "required": True, "schema": key,
             "description": "the firm's key in the server's settings"},
            {"name": "source", "in": "path", "required": True, "schema": key,
             "description": "the phone system's key under the tenant's `sources`"}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
            {"$ref": _REF + "Event"},
            {"type": "array", "items": {"$ref": _REF + "Event"}, "minItems": 1,
             "maxItems": MAX_EVENTS, "description": "taken whole or not at all"}]}}}},
        "responses": {"200": {"description": "Stored.", "content": {"application/json": {
            "schema": {"$ref": _REF + "Acknowledgement"}}}}, **errors},
    }

    def plain(summary: str, media: str = "application/json") -> dict[str, Any]:
        return {"get": {"summary": summary, "responses": {"200": {
            "description": "OK", "content": {media: {}}}}}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "callbridge intake", "version": __version__, "description": (
            "Phone systems send calls, SMS and faxes to `callbridge serve`. Each source of "
            "each tenant is configured on the server with its own signing key.")},
        "paths": {
            PATH: {"post": intake},
            "/healthz": plain("The process answers"),
            "/readyz": {"get": {"summary": "Ready for traffic: the ledger answers, its schema "
                                           "is current, the server is not shutting down",
                                "responses": {"200": {"description": "ready"},
                                              "503": {"description": "not ready, with why"}}}},
            "/metrics": plain("Prometheus text format", "text/plain"),
        },
        "components": {
            "securitySchemes": {"callbridgeSignature": {
                "type": "apiKey", "in": "header", "name": "Callbridge-Signature",
                "description": (
                    "`t=<unix time>,v1=<hex HMAC-SHA256>` over the bytes of `t`, a full stop "
                    "and the raw body, keyed with the source's secret. Within 5 minutes of "
                    "the server's clock. Several `v1=` values may be sent during a key "
                    "rotation.")}},
            "schemas": {**_event_schemas(), "Acknowledgement": ack, "Error": _error_schema()},
        },
    }


def render() -> str:
    """The document as the published file holds it."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def routes(state: Any) -> list[Any]:
    """``GET /v1/openapi.json``: the document, as published."""
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    text = render()

    async def openapi(request: Request) -> Response:
        return Response(text, media_type="application/json")

    return [Route("/v1/openapi.json", openapi, methods=["GET"])]
