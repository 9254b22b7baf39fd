"""The call-history page (SPEC §4): a firm's recent calls, SMS and faxes with their outcome
in each app and why; a manual log to an app, the contact of an unresolved event chosen
among its candidates, and notes added or cancelled during a call (delayed logging).

Server-rendered HTML (Jinja2 templates shipped in the package, one stylesheet, no
scripts): plain forms that post and redirect back. Authenticated as the operator API
is, by the operator's bearer token, exchanged at ``/history/login`` for a signed
session cookie (:mod:`callbridge.serve.history_session`); every form carries a CSRF
token and a POST from another origin is refused. An operator sees only the tenants
its token is scoped to.

The actions are the logging modes' Python API (:mod:`callbridge.modes`), with the
page's tenant passed along so an event of another firm can never be named.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Protocol
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from callbridge.clock import Clock
from callbridge.serve import history_view as hv
from callbridge.serve.auth import ApiError, Operator, authenticate, token_hash
from callbridge.serve.auth import _count_failure as count_failure
from callbridge.serve.history_actions import Actions
from callbridge.serve.history_forms import HEADERS, PREFIX, Refused, one, origin, safe_next
from callbridge.serve.history_forms import form as read_form
from callbridge.serve.history_session import COOKIE, SESSION_SECONDS, Session, SessionKeys
from callbridge.settings import Settings

__all__ = ["PREFIX", "routes"]

log = logging.getLogger("callbridge.serve.history")

_NOTICES = {
    "notes": "Notes added: the call is logged with them after it ends.",
    "cancelled": "Notes cancelled.",
    "signedout": "Signed out.",
}


class HistoryState(Protocol):
    """What the page needs of the server's state (``callbridge.serve.state.ServerState``)."""

    runtime: Any
    engine: Any
    clock: Clock
    base_url: str


Handler = Callable[[Request], Awaitable[Response]]


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("callbridge.serve", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True)


class HistoryPages:
    """The page's endpoints, sharing the templates and the session keys."""

    def __init__(self, state: HistoryState) -> None:
        self.state = state
        self.env = _templates()
        self._keys: SessionKeys | None = None
        self.css = resources.files("callbridge.serve").joinpath(
            "static/history.css").read_bytes()

    # --- plumbing ------------------------------------------------------------------

    @property
    def keys(self) -> SessionKeys:
        if self._keys is None:  # the ledger's hash key, set once the ledger is migrated
            self._keys = SessionKeys(self.state.engine.ledger._cipher.mac_key)
        return self._keys

    @property
    def settings(self) -> Settings:
        settings: Settings = self.state.runtime.settings.current()
        return settings

    def render(self, request: Request, template: str, *, status: int = 200,
               session: Session | None = None, **values: Any) -> HTMLResponse:
        html = self.env.get_template(f"history/{template}").render(
            prefix=PREFIX, session=session, csrf=self.keys.csrf(session) if session else "",
            **values)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def problem(self, request: Request, exc: Refused, session: Session | None) -> HTMLResponse:
        link = (None, None) if session else (f"{PREFIX}/login", "Sign in")
        return self.render(request, "page.html", status=exc.status, session=session,
                           title=exc.title, detail=exc.text, link=link[0], link_text=link[1])

    def session(self, request: Request) -> Session | None:
        return self.keys.read(request.cookies.get(COOKIE), self.settings.operators,
                              self.state.clock.now())

    def operator(self, session: Session) -> Operator:
        return Operator(name=session.operator,
                        tenants=self.settings.operators[session.operator].tenants)

    def tenant(self, session: Session, key: str) -> str:
        """The tenant the path names, if the operator may see it."""
        if not self.operator(session).may(key):
            raise Refused(403, "Not your firm", "You may not see this firm's events.")
        if key not in self.settings.tenants:
            raise Refused(404, "No such firm", "No firm by this name is configured.")
        return key

    def apps(self, tenant: str) -> dict[str, bool]:
        """The tenant's apps turned on, each with whether it logs automatically."""
        return {name: app.automatic_logging
                for name, app in self.settings.tenants[tenant].apps.items() if app.enabled}

    def firm(self, tenant: str) -> str:
        return self.settings.tenants[tenant].name or tenant

    def same_origin(self, request: Request) -> None:
        """Refuse a POST a browser sent from another site's page (its ``Origin``)."""
        sent = request.headers.get("origin")
        if sent is not None and origin(sent) not in {
                origin(str(request.base_url)), origin(self.state.base_url)}:
            raise Refused(403, "Refused", "The form was sent from another site.")

    async def form(self, request: Request, session: Session) -> dict[str, list[str]]:
        """A POSTed form, checked: same origin, our CSRF token, a bounded body."""
        self.same_origin(request)
        fields = await read_form(request)
        if not self.keys.csrf_ok(session, one(fields, "csrf")):
            raise Refused(403, "The form has expired",
                          "Reload the page and send the form again.")
        return fields

    # --- endpoints -----------------------------------------------------------------

    def page(self, fn: Callable[[Request, Session], Awaitable[Response]],
             *, post: bool = False) -> Handler:
        """``fn`` for a signed-in user; others are sent to the sign-in form (GET) or
        refused (POST)."""

        async def run(request: Request) -> Response:
            session = self.session(request)
            if session is None:
                if post:
                    return self.problem(request, Refused(
                        401, "Signed out", "Your session has ended: sign in again."), None)
                target = quote(request.url.path, safe="/")
                return RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303,
                                        headers=HEADERS)
            try:
                return await fn(request, session)
            except Refused as exc:
                return self.problem(request, exc, session)

        run.__name__ = fn.__name__
        return run

    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", title="Sign in",
                           next=safe_next(request.query_params.get("next")),
                           notice=_NOTICES.get(request.query_params.get("done", "")))

    async def login(self, request: Request) -> Response:
        self.same_origin(request)
        fields = {name: values[0] for name, values in (await read_form(request, max_fields=20)).items()}
        token = fields.get("token", "").strip()
        try:
            operator = authenticate(self.settings.operators, f"Bearer {token}")
        except ApiError as exc:
            log.warning("call history: a sign-in with a token no operator has was refused")
            count_failure(self.state, "unauthenticated")
            return self.render(request, "login.html", status=exc.status, title="Sign in",
                               next=safe_next(fields.get("next")),
                               error="This is not an operator's token. Check it and try "
                                     "again.", error_title="Not signed in")
        cookie, _ = self.keys.issue(operator.name, token_hash(token), self.state.clock.now())
        response = RedirectResponse(safe_next(fields.get("next")) or f"{PREFIX}/",
                                    status_code=303, headers=HEADERS)
        response.set_cookie(COOKIE, cookie, max_age=SESSION_SECONDS, path=PREFIX,
                            secure=self._secure(request), httponly=True, samesite="strict")
        return response

    def _secure(self, request: Request) -> bool:
        return request.url.scheme == "https" or self.state.base_url.startswith("https:")

    async def logout(self, request: Request, session: Session) -> Response:
        await self.form(request, session)
        response = RedirectResponse(f"{PREFIX}/login?done=signedout", status_code=303,
                                    headers=HEADERS)
        response.delete_cookie(COOKIE, path=PREFIX, secure=self._secure(request),
                               httponly=True, samesite="strict")
        return response

    async def home(self, request: Request, session: Session) -> Response:
        operator = self.operator(session)
        tenants = [(key, t.name) for key, t in sorted(self.settings.tenants.items())
                   if operator.may(key)]
        if len(tenants) == 1:
            return RedirectResponse(f"{PREFIX}/{tenants[0][0]}/", status_code=303,
                                    headers=HEADERS)
        return self.render(request, "tenants.html", session=session, title="Firms",
                           tenants=tenants)

    async def events(self, request: Request, session: Session) -> Response:
        tenant = self.tenant(session, request.path_params["tenant"])
        before = request.query_params.get("before")
        older = int(before) if before and before.isdigit() and len(before) < 19 else None
        apps = self.apps(tenant)
        rows = await self.state.engine.db(hv.recent_events, self.state.engine.ledger, tenant,
                                          apps, before=older)
        return self.render(
            request, "events.html", session=session, title="Recent calls, SMS and faxes",
            firm=self.firm(tenant), tenant=tenant, apps=apps, rows=rows, zone=self._zone(tenant),
            older=rows[-1].pk if len(rows) == hv.PAGE_SIZE else None)

    def _zone(self, tenant: str) -> str:
        return self.settings.tenants[tenant].time_zone

    async def row(self, tenant: str, pk: int) -> hv.EventRow:
        """The firm's event ``pk`` (the ledger's id, as the page's links give it)."""
        row: hv.EventRow | None = None
        if 0 < pk < 2**63:
            row = await self.state.engine.db(hv.one_event, self.state.engine.ledger, tenant, pk,
                                             self.apps(tenant))
        if row is None:
            raise Refused(404, "No such event", "This firm has no event with this id.")
        return row

    async def event(self, request: Request, session: Session, *, status: int = 200,
                    error: str | None = None, error_title: str | None = None) -> Response:
        tenant = self.tenant(session, request.path_params["tenant"])
        row = await self.row(tenant, int(request.path_params["pk"]))
        notice = _NOTICES.get(request.query_params.get("done", "")) if error is None else None
        app = request.query_params.get("app")
        if error is None and request.query_params.get("done") == "log" and row.outcome(app or ""):
            done = row.outcome(app or "")
            assert done is not None
            notice = (f"Logged in {done.app} by hand." if done.done
                      else f"Not logged in {done.app}: {done.label}. {done.why}")
        return self.render(
            request, "event.html", status=status, session=session, title=row.title,
            firm=self.firm(tenant), tenant=tenant, row=row, zone=self._zone(tenant),
            notice=notice, error=error, error_title=error_title,
            started_at=self.state.clock.now().isoformat(),
            delay_words=self._delay_words(tenant),
            extensions=self.settings.tenants[tenant].extensions)

    def _delay_words(self, tenant: str) -> str:
        """How long after a call its delayed log is written, in words."""
        minutes = {app.delayed_logging_minutes
                   for app in self.settings.tenants[tenant].apps.values() if app.enabled}
        if len(minutes) != 1:
            return "a few minutes"
        (value,) = minutes
        return f"{value:g} minute{'s' if value != 1 else ''}"

    async def not_found(self, request: Request) -> Response:
        rest = request.path_params.get("rest", "")
        if rest and "/" not in rest and len(rest) <= 100:  # a firm's page without its slash
            return RedirectResponse(f"{PREFIX}/{quote(rest, safe='')}/", status_code=303,
                                    headers=HEADERS)
        return self.problem(request, Refused(404, "Not found", "There is no such page."),
                            self.session(request))

    async def stylesheet(self, request: Request) -> Response:
        return Response(self.css, media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600",
                                 "X-Content-Type-Options": "nosniff"})


def routes(state: HistoryState) -> list[BaseRoute]:
    """The page's routes under ``/history``."""
    pages = HistoryPages(state)
    actions = Actions(pages)
    tenant = "/{tenant:str}"
    event = tenant + "/events/{pk:int}"
    return [Mount(PREFIX, routes=[
        Route("/", pages.page(pages.home), methods=["GET"]),
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", _guard(pages, pages.login), methods=["POST"]),
        Route("/logout", pages.page(pages.logout, post=True), methods=["POST"]),
        Route("/static/history.css", pages.stylesheet, methods=["GET"]),
        Route(tenant + "/", pages.page(pages.events), methods=["GET"]),
        Route(event, pages.page(pages.event), methods=["GET"]),
        Route(event + "/log", pages.page(actions.log_event, post=True), methods=["POST"]),
        Route(event + "/notes", pages.page(actions.add_notes, post=True), methods=["POST"]),
        Route(event + "/notes/cancel", pages.page(actions.cancel_notes, post=True),
              methods=["POST"]),
        Route("/{rest:path}", pages.not_found, methods=["GET"]),
    ])]


def _guard(pages: HistoryPages, fn: Handler) -> Handler:
    async def run(request: Request) -> Response:
        try:
            return await fn(request)
        except Refused as exc:
            return pages.problem(request, exc, None)

    return run

