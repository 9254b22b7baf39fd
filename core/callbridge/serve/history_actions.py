"""The call-history page's actions: a manual log (also the choice of an unresolved
event's contact) and notes added or cancelled during a call, through the logging
modes' Python API with the page's tenant, each answered by a redirect back to the
event (or the event again, with the refusal in words a user can act on)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from callbridge.modes import ManualRefused
from callbridge.modes.manual import log_manually
from callbridge.modes.notes import MAX_NOTES, add_notes, cancel_notes
from callbridge.serve.history_forms import HEADERS, PREFIX, one
from callbridge.serve.history_session import Session

if TYPE_CHECKING:
    from callbridge.serve.history import HistoryPages

#: Notes said to have been started longer ago than this are taken as started now.
MAX_NOTES_AGE = timedelta(hours=12)


class Actions:
    """The POST endpoints of an event's page."""

    def __init__(self, pages: HistoryPages) -> None:
        self.pages = pages

    async def _again(self, request: Request, session: Session, status: int, title: str,
                     text: str) -> Response:
        """The event's page again, with why the action was refused."""
        return await self.pages.event(request, session, status=status, error_title=title,
                                      error=text)

    def _back(self, tenant: str, pk: int, done: str, app: str | None = None) -> Response:
        extra = f"&app={quote(app, safe='')}" if app else ""
        return RedirectResponse(f"{PREFIX}/{tenant}/events/{pk}?done={done}{extra}",
                                status_code=303, headers=HEADERS)

    async def log_event(self, request: Request, session: Session) -> Response:
        tenant = self.pages.tenant(session, request.path_params["tenant"])
        fields = await self.pages.form(request, session)
        row = await self.pages.row(tenant, int(request.path_params["pk"]))
        app = one(fields, "app")
        if app not in self.pages.apps(tenant):
            return await self._again(request, session, 422, "Not logged",
                                     "Choose one of this firm's apps.")
        contact = one(fields, "contact").strip() or None
        try:
            await log_manually(self.pages.state.engine, row.ref, app, contact, tenant=tenant)
        except ManualRefused as exc:
            return await self._again(request, session, exc.status, f"Not logged in {app}", exc.problem)
        return self._back(tenant, row.pk, "log", app)

    async def add_notes(self, request: Request, session: Session) -> Response:
        tenant = self.pages.tenant(session, request.path_params["tenant"])
        fields = await self.pages.form(request, session)
        row = await self.pages.row(tenant, int(request.path_params["pk"]))
        text = one(fields, "text").strip()
        apps = [a for a in fields.get("app", []) if a in self.pages.apps(tenant)]
        if not text or len(text) > MAX_NOTES:
            return await self._again(request, session, 422, "No notes added",
                                     "Write the notes (at most 10,000 characters).")
        if not apps:
            return await self._again(request, session, 422, "No notes added",
                                     "Choose at least one app to log the call in.")
        started = self._started(one(fields, "started_at"))
        chosen = {a: [c] if (c := one(fields, f"contact:{a}").strip()) else [] for a in apps}
        try:
            await add_notes(self.pages.state.engine, row.ref, chosen, text,
                            started, tenant=tenant)
        except ManualRefused as exc:
            return await self._again(request, session, exc.status, "No notes added", exc.problem)
        return self._back(tenant, row.pk, "notes")

    def _started(self, text: str) -> datetime:
        """When the user began the notes: the page's time, if it is a plausible one."""
        now = self.pages.state.clock.now()
        try:
            started = datetime.fromisoformat(text)
        except ValueError:
            return now
        if started.tzinfo is None or not now - MAX_NOTES_AGE <= started <= now:
            return now
        return started

    async def cancel_notes(self, request: Request, session: Session) -> Response:
        tenant = self.pages.tenant(session, request.path_params["tenant"])
        await self.pages.form(request, session)
        row = await self.pages.row(tenant, int(request.path_params["pk"]))
        try:
            await cancel_notes(self.pages.state.engine, row.ref, tenant=tenant)
        except ManualRefused as exc:
            return await self._again(request, session, exc.status, "Notes not cancelled", exc.problem)
        return self._back(tenant, row.pk, "cancelled")

