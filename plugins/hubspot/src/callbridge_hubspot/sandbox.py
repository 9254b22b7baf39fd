"""An emulator of the subset of HubSpot's API the plugin uses, as an ASGI app.

Answers as HubSpot documents: CRM objects v3 (create, read, update, search, batch
create with per-input ``objectWriteTraceId``), association type ids, owners, the
properties API, the Files API, account details, private-app tokens and OAuth 2.0
(``/oauth/v1/token``), and HubSpot's rate limits by the injected clock:

* a burst window per token (``burst`` requests per 10 s; 429 ``TEN_SECONDLY_ROLLING``),
  a daily budget per portal that resets at the portal's midnight (429 ``DAILY``),
  search 5 a second per portal (429 ``SECONDLY``), with the
  ``X-HubSpot-RateLimit-*`` headers on every answer but searches;
* a batch with a bad input answers 207 with per-input errors, or (``batch_errors
  = "400"``) refuses the whole request with a 400 naming the input.

Run it with ``callbridge sandbox hubspot``: seeded from the JSON file named by
``CALLBRIDGE_HUBSPOT_SANDBOX_SEED`` (else the bundled ``sandbox_seed.json``). A
private-app token needs no browser: the seed's ``tokens``, or
``POST /sandbox/private-apps`` (answers ``{"token": ...}``).
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from callbridge.faults import FaultInjector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from callbridge_hubspot.limits import next_midnight
from callbridge_hubspot.portal import ApiError, Portal, iso, load_seed, seed

OBJECT_TYPES = ("contacts", "calls", "communications", "notes")


@dataclass
class Limits:
    """HubSpot's limits as the sandbox applies them (``None``: not applied)."""

    burst: int | None = 100
    daily: int | None = 250_000
    search_per_second: int | None = 5
    window: float = 10.0
    _burst_log: dict[str, deque[float]] = field(default_factory=dict)
    _search_log: deque[float] = field(default_factory=deque)
    daily_used: int = 0
    day_ends: datetime | None = None


@dataclass
class OAuthApp:
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    lifetime: int = 1800
    codes: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    expiry: dict[str, float] = field(default_factory=dict)  # access token -> epoch


def _fault(status: int, category: str, message: str, **extra: str) -> bytes:
    return json.dumps({**ApiError(status, category, message).body, **extra}).encode()


#: HubSpot's error bodies for the faults the host's injector answers with.
FAULT_BODIES = {
    401: _fault(401, "INVALID_AUTHENTICATION", "Authentication credentials not found."),
    429: _fault(429, "RATE_LIMITS", "You have reached your ten_secondly_rolling limit.",
                errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING"),
    **{status: _fault(status, "INTERNAL_ERROR", "Service unavailable, try again later.")
       for status in (500, 502, 503, 504)},
}


def _error(exc: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=headers)


class Sandbox:
    """The ASGI app's routes over a :class:`Portal`."""

    def __init__(self, portal: Portal, limits: Limits | None = None,
                 oauth: OAuthApp | None = None) -> None:
        self.portal = portal
        self.limits = limits or Limits()
        self.oauth = oauth or OAuthApp()

    # --- auth and limits -----------------------------------------------------------------

    def _token(self, request: Request) -> tuple[str, bool]:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip()
        now = self.portal.clock.now().timestamp()
        if token in self.portal.tokens:
            return token, False
        if token in self.oauth.expiry and self.oauth.expiry[token] > now:
            return token, True
        raise ApiError(401, "INVALID_AUTHENTICATION",
                       "Authentication credentials not found or expired.")

    def _admit(self, token: str, oauth: bool, search: bool) -> dict[str, str]:
        lim, clock = self.limits, self.portal.clock
        now = clock.monotonic()
        wall = clock.now()
        if lim.day_ends is None or wall >= lim.day_ends:
            lim.day_ends = next_midnight(wall, self.portal.time_zone)
            lim.daily_used = 0
        if lim.daily is not None and lim.daily_used >= lim.daily and not oauth:
            raise ApiError(429, "RATE_LIMITS", "You have reached your daily limit.",
                           errorType="RATE_LIMIT", policyName="DAILY")
        if search and lim.search_per_second is not None:
            while lim._search_log and lim._search_log[0] <= now - 1.0:
                lim._search_log.popleft()
            if len(lim._search_log) >= lim.search_per_second:
                raise ApiError(429, "RATE_LIMITS", "You have reached your secondly limit.",
                               errorType="RATE_LIMIT", policyName="SECONDLY")
            lim._search_log.append(now)
        log = lim._burst_log.setdefault(token, deque())
        while log and log[0] <= now - lim.window:
            log.popleft()
        if lim.burst is not None and len(log) >= lim.burst:
            raise ApiError(429, "RATE_LIMITS", "You have reached your ten_secondly_rolling limit.",
                           errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING")
        log.append(now)
        lim.daily_used += 1
        if search:
            return {}  # search answers carry no rate-limit headers
        headers = {"X-HubSpot-RateLimit-Interval-Milliseconds": str(int(lim.window * 1000))}
        if lim.burst is not None:
            headers |= {"X-HubSpot-RateLimit-Max": str(lim.burst),
                        "X-HubSpot-RateLimit-Remaining": str(max(0, lim.burst - len(log)))}
        if lim.daily is not None and not oauth:
            headers |= {"X-HubSpot-RateLimit-Daily": str(lim.daily),
                        "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, lim.daily - lim.daily_used))}
        return headers

    async def _api(self, request: Request, handler: Any, *, search: bool = False) -> Response:
        multipart = request.headers.get("content-type", "").startswith("multipart/")
        raw = b"" if multipart else await request.body()  # a form is read by its handler
        entry: dict[str, Any] = {"method": request.method, "path": request.url.path,
                                 "query": dict(request.query_params)}
        if raw and request.headers.get("content-type", "").startswith("application/json"):
            entry["json"] = json.loads(raw)
        self.portal.requests.append(entry)
        headers: dict[str, str] = {}
        try:
            token, oauth = self._token(request)
            headers = self._admit(token, oauth, search)
            status, body = await handler(request, raw)
        except ApiError as exc:
            return _error(exc, headers)
        return JSONResponse(body, status_code=status, headers=headers)

    # --- objects --------------------------------------------------------------------------

    def _type(self, request: Request) -> str:
        object_type = request.path_params["object_type"]
        if object_type not in OBJECT_TYPES:
            raise ApiError(400, "OBJECT_NOT_FOUND", f"unknown object type {object_type}")
        return str(object_type)

    async def create(self, request: Request) -> Response:
        async def go(req: Request, raw: bytes) -> tuple[int, Any]:
            object_type, body = self._type(req), json.loads(raw or b"{}")
            props = body.get("properties") or {}
            self.portal.check_properties(object_type, props, creating=True)
            assoc = self.portal.check_associations(object_type, body.get("associations") or [])
            oid = self.portal.write(object_type, props, assoc)
            return 201, self.portal.shape(object_type, self.portal.objects[object_type][oid],
                                          list(props))
        return await self._api(request, go)

    async def read(self, request: Request) -> Response:
        async def go(req: Request, raw: bytes) -> tuple[int, Any]:
            object_type, oid = self._type(req), req.path_params["object_id"]
            record = self.portal.objects[object_type].get(oid)
            if record is None:
                raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
            names = [n for n in req.query_params.get("properties", "").split(",") if n]
            return 200, self.portal.shape(object_type, record, names)
        return await self._api(request, go)

    async def update(self, request: Request) -> Response:
        async def go(req: Request, raw: bytes) -> tuple[int, Any]:
            object_type, oid = self._type(req), req.path_params["object_id"]
            if oid not in self.portal.objects[object_type]:
                raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
            props = json.loads(raw or b"{}").get("properties") or {}
            self.portal.check_properties(object_type, props, creating=False)
            self.portal.update(object_type, oid, props)
            return 200, self.portal.shape(object_type, self.portal.objects[object_type][oid],
                                          list(props))
        return await self._api(request, go)

    async def search(self, request: Request) -> Response:
        async def go(req: Request, raw: bytes) -> tuple[int, Any]:
            return 200, self.portal.search(self._type(req), json.loads(raw or b"{}"),
                                           len(raw.decode()))
        return await self._api(request, go, search=True)

    async def batch_create(self, request: Request) -> Response:
        async def go(req: Request, raw: bytes) -> tuple[int, Any]:
            object_type = self._type(req)
            inputs = json.loads(raw or b"{}").get("inputs") or []
            if len(inputs) > 100:
                raise ApiError(400, "VALIDATION_ERROR", "a batch holds at most 100 inputs")
            started = iso(self.portal.clock.now())
            checked, errors = [], []
            for n, item in enumerate(inputs):
                trace = str(item.get("objectWriteTraceId", n))
                try:
                    props = item.get("properties") or {}
                    self.portal.check_properties(object_type, props, creating=True)
                    assoc = self.portal.check_associations(object_type, item.get("associations") or [])
                    checked.append((trace, props, assoc))
                except ApiError as exc:
                    if self.portal.batch_errors == "400":
                        raise ApiError(400, exc.body["category"], exc.body["message"],
                                       context={"objectWriteTraceId": [trace]},
                                       errors=exc.body.get("errors")) from None
                    errors.append({"status": "error", "category": exc.body["category"],
                                   "message": exc.body["message"],
                                   "context": {"objectWriteTraceId": [trace]},
                                   "errors": exc.body.get("errors", []), "links": {}})
            results = []
            for trace, props, assoc in checked:
                oid = self.portal.write(object_type, props, assoc, trace=trace)
                results.append(self.portal.shape(object_type, self.portal.objects[object_type][oid],
                                                 list(props), trace=True))
            body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                    "completedAt": iso(self.portal.clock.now())}
            if errors:
                body |= {"numErrors": len(errors), "errors": errors}
            return (207 if errors else 201), body
        return await self._api(request, go)

    # --- owners, properties, files, account -------------------------------------------------

    async def owners(self, request: Request) -> Response:
        async def go(req: Request, raw: bytes) -> tuple[int, Any]:
            email = req.query_params.get("email")
            limit = min(int(req.query_params.get("limit", "100")), 500)
            after = int(req.query_params.get("after", "0"))
            rows = [o for o in self.portal.owners
                    if email is None or (o["email"] or "").lower() == email.lower()]
            body: dict[str, Any] = {"results": rows[after:after + limit]}
            if after + limit < len(rows):
                body["paging"] = {"next": {"after": str(after + limit)}}
            return 200, body
        return await self._api(request, go)

    async def get_property(self, request: Request) -> Response:
        async def go(req: Request, raw: bytes) -> tuple[int, Any]:
            object_type, name = self._type(req), req.path_params["name"]
            spec = self.portal.definition(object_type, name)
            if spec is None:
                raise ApiError(404, "OBJECT_NOT_FOUND", f"property {name} does not exist")
            return 200, {"name": name, "label": spec.get("label", name),
                         "type": spec.get("type", "string"), "fieldType": spec.get("fieldType", "text"),
                         "groupName": spec.get("groupName", "sandbox"), "options": [],
                         "hasUniqueValue": False, "hidden": spec.get("hidden", False)}
        return await self._api(request, go)

    async def create_property(self, request: Request) -> Response:
        async def go(req: Request, raw: bytes) -> tuple[int, Any]:
            object_type, body = self._type(req), json.loads(raw or b"{}")
            missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
            if missing:
                raise ApiError(400, "VALIDATION_ERROR", f"missing: {', '.join(missing)}")
            if body.get("hasUniqueValue") and object_type not in ("contacts",):
                raise ApiError(400, "VALIDATION_ERROR",
                               f"unique value properties are not supported on {object_type}")
            if self.portal.definition(object_type, body["name"]) is not None:
                raise ApiError(409, "OBJECT_ALREADY_EXISTS", "the property already exists")
            self.portal.custom_properties.setdefault(object_type, {})[body["name"]] = dict(body)
            return 201, {**body, "options": body.get("options", []), "hasUniqueValue": False}
        return await self._api(request, go)

    async def upload(self, request: Request) -> Response:
        form = await request.form()

        async def go(req: Request, raw: bytes) -> tuple[int, Any]:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ApiError(400, "VALIDATION_ERROR", "a file is required")
            options = json.loads(str(form.get("options") or "{}"))
            if options.get("access") not in ("PRIVATE", "PUBLIC_INDEXABLE", "PUBLIC_NOT_INDEXABLE",
                                             "HIDDEN_PRIVATE", "HIDDEN_INDEXABLE",
                                             "HIDDEN_NOT_INDEXABLE", "SENSITIVE", "HIDDEN_SENSITIVE"):
                raise ApiError(400, "VALIDATION_ERROR", "options.access is required")
            data = await upload.read()
            full = str(form.get("fileName") or upload.filename or "file")
            name, _, ext = full.rpartition(".") if "." in full else (full, "", "")
            fid = self.portal.next_id()
            now = iso(self.portal.clock.now())
            folder = str(form.get("folderPath") or "/")
            record = {"id": fid, "name": name, "extension": ext, "access": options["access"],
                      "path": f"{folder.rstrip('/')}/{full}", "size": len(data),
                      "type": "DOCUMENT", "archived": False, "createdAt": now, "updatedAt": now,
                      "isUsableInContent": False,
                      "url": f"https://api-na1.hubspot.sandbox.example/files/{fid}"}
            self.portal.files[fid] = record
            self.portal.file_bytes[fid] = data
            return 201, record
        return await self._api(request, go)

    async def search_files(self, request: Request) -> Response:
        async def go(req: Request, raw: bytes) -> tuple[int, Any]:
            name = req.query_params.get("name")
            rows = [f for f in self.portal.files.values() if name is None or f["name"] == name]
            return 200, {"results": rows}
        return await self._api(request, go)

    async def account(self, request: Request) -> Response:
        async def go(req: Request, raw: bytes) -> tuple[int, Any]:
            return 200, {"portalId": self.portal.portal_id, "timeZone": self.portal.time_zone,
                         "accountType": "STANDARD", "companyCurrency": "USD",
                         "additionalCurrencies": [], "utcOffset": "", "utcOffsetMilliseconds": 0,
                         "uiDomain": "app.hubspot.com", "dataHostingLocation": "na1"}
        return await self._api(request, go)

    # --- tokens -----------------------------------------------------------------------------

    async def private_app(self, request: Request) -> Response:
        token = f"pat-na1-{secrets.token_hex(16)}"
        self.portal.tokens.add(token)
        return JSONResponse({"token": token}, status_code=201)

    async def authorize(self, request: Request) -> Response:
        """Approves at once (no browser) and redirects back with a code."""
        code = secrets.token_hex(8)
        self.oauth.codes.add(code)
        query = urlencode({"code": code, "state": request.query_params.get("state", "")})
        return RedirectResponse(f"{request.query_params.get('redirect_uri', '/')}?{query}")

    async def token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("client_id") != self.oauth.client_id or \
                form.get("client_secret") != self.oauth.client_secret:
            return JSONResponse({"status": "BAD_CLIENT_ID", "message": "unknown client"}, 400)
        grant = form.get("grant_type")
        if grant == "authorization_code" and form.get("code") in self.oauth.codes:
            self.oauth.codes.discard(str(form.get("code")))
        elif grant == "refresh_token" and form.get("refresh_token") in self.oauth.refresh_tokens:
            pass
        else:
            return JSONResponse({"status": "BAD_REFRESH_TOKEN", "message": "invalid grant"}, 400)
        return JSONResponse(self.issue())

    def issue(self, access: str | None = None, lifetime: int | None = None) -> dict[str, Any]:
        access = access or secrets.token_hex(16)
        refresh = secrets.token_hex(16)
        life = lifetime or self.oauth.lifetime
        self.oauth.expiry[access] = self.portal.clock.now().timestamp() + life
        self.oauth.refresh_tokens.add(refresh)
        return {"access_token": access, "refresh_token": refresh, "expires_in": life,
                "token_type": "bearer"}

    def app(self) -> Starlette:
        objects = "/crm/v3/objects/{object_type}"
        return Starlette(routes=[
            Route(f"{objects}/search", self.search, methods=["POST"]),
            Route(f"{objects}/batch/create", self.batch_create, methods=["POST"]),
            Route(objects, self.create, methods=["POST"]),
            Route(objects + "/{object_id}", self.read, methods=["GET"]),
            Route(objects + "/{object_id}", self.update, methods=["PATCH"]),
            Route("/crm/v3/owners", self.owners, methods=["GET"]),
            Route("/crm/v3/owners/", self.owners, methods=["GET"]),
            Route("/crm/v3/properties/{object_type}/{name}", self.get_property, methods=["GET"]),
            Route("/crm/v3/properties/{object_type}", self.create_property, methods=["POST"]),
            Route("/files/v3/files", self.upload, methods=["POST"]),
            Route("/files/v3/files/search", self.search_files, methods=["GET"]),
            Route("/account-info/v3/details", self.account, methods=["GET"]),
            Route("/sandbox/private-apps", self.private_app, methods=["POST"]),
            Route("/oauth/authorize", self.authorize, methods=["GET"]),
            Route("/oauth/v1/token", self.token, methods=["POST"]),
        ])


def create_app(portal: Portal | None = None, *, limits: Limits | None = None,
               oauth: OAuthApp | None = None, faults: bool = True) -> Any:
    """The sandbox as an ASGI app (in the host's fault injector unless ``faults=False``).

    With no ``portal``, one seeded from :func:`load_seed`.
    """
    if portal is None:
        portal = Portal()
        seed(portal, load_seed())
    sandbox = Sandbox(portal, limits, oauth)
    app = sandbox.app()
    app.state.sandbox = sandbox
    app.fault_bodies = FAULT_BODIES  # type: ignore[attr-defined]  # what injected faults answer
    return FaultInjector(app) if faults else app
