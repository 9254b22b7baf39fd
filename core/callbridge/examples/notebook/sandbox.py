"""The notebook's sandbox: a tiny app with contacts, matters, users and logs, over HTTP.

An ASGI app (Starlette) that stands in for a real app in the notebook plugin's
contract tests, the host's tests, the benchmark and the demo (``callbridge
sandbox notebook``). It enforces nothing about duplicates: a test that counts
its logs sees every duplicate the host lets through. Its time comes from an
injected clock (the contract kit passes its own), so stamps match the kit's.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class _WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class NotebookState:
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    matters: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock: Any = field(default_factory=_WallClock)  # anything with now() -> aware datetime
    delay_ms: tuple[int, int] = (0, 0)  # a random wait before each answer: a slow app
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._ids)}"

    def add_contact(self, name: str, phones: list[str], emails: list[str] | None = None) -> str:
        cid = self.next_id("c")
        self.contacts[cid] = {"id": cid, "name": name, "phones": phones, "emails": emails or [],
                              "updated_at": self.now(), "seq": int(cid[1:])}
        return cid

    def now(self) -> str:
        return str(self.clock.now().isoformat())

    def add_matter(self, contact_id: str, name: str, status: str = "open") -> str:
        mid = self.next_id("m")
        self.matters[mid] = {"id": mid, "contact_id": contact_id, "name": name, "status": status}
        return mid

    def add_user(self, name: str, email: str) -> str:
        uid = self.next_id("u")
        self.users[uid] = {"id": uid, "name": name, "email": email}
        return uid


def create_app(state: NotebookState | None = None, *, clock: Any = None) -> Starlette:
    """The notebook over HTTP, on ``state`` (a fresh one by default), timed by ``clock``."""
    st = state or NotebookState()
    if clock is not None:
        st.clock = clock

    def digits(text: str) -> str:
        return "".join(ch for ch in text if ch.isdigit())

    async def contacts(request: Request) -> JSONResponse:
        if request.method == "POST":
            body = await request.json()
            if not body.get("name"):
                return JSONResponse({"error": "name is required"}, status_code=422)
            cid = st.add_contact(body["name"], list(body.get("phones", [])), list(body.get("emails", [])))
            return JSONResponse(st.contacts[cid], status_code=201)
        q = request.query_params
        items = sorted(st.contacts.values(), key=lambda c: c["seq"])
        if "phone" in q:
            want = digits(q["phone"])[-10:]
            items = [c for c in items if any(digits(p)[-10:] == want for p in c["phones"])]
        if "email" in q:
            items = [c for c in items if q["email"].lower() in [e.lower() for e in c["emails"]]]
        if "updated_since" in q:
            items = [c for c in items if c["updated_at"] >= q["updated_since"]]
        start = int(q.get("cursor", "0"))
        limit = int(q.get("limit", "100"))
        page = items[start:start + limit]
        nxt = str(start + limit) if start + limit < len(items) else None
        return JSONResponse({"data": page, "next": nxt})

    async def matters(request: Request) -> JSONResponse:
        cid = request.path_params["cid"]
        return JSONResponse({"data": [m for m in st.matters.values()
                                      if m["contact_id"] == cid and m["status"] == "open"]})

    async def users(request: Request) -> JSONResponse:
        email = request.query_params.get("email")
        items = [u for u in st.users.values() if email is None or u["email"].lower() == email.lower()]
        return JSONResponse({"data": sorted(items, key=lambda u: (u["name"].lower(), u["id"]))})

    async def logs(request: Request) -> JSONResponse:
        if request.method == "POST":
            body = await request.json()
            lid = st.next_id("l")
            st.logs[lid] = {**body, "id": lid, "created_at": st.now()}
            return JSONResponse(st.logs[lid], status_code=201)
        marker = request.query_params.get("marker")
        return JSONResponse({"data": [entry for entry in st.logs.values()
                                      if marker is None or entry.get("marker") == marker]})

    async def log_one(request: Request) -> JSONResponse:
        lid = request.path_params["lid"]
        if lid not in st.logs:
            return JSONResponse({"error": "no such log"}, status_code=404)
        st.logs[lid].update(await request.json())
        return JSONResponse(st.logs[lid])

    async def slow(request: Request, call_next: Any) -> Any:
        low, high = st.delay_ms
        if high > 0:
            await asyncio.sleep(random.uniform(low, high) / 1000)
        return await call_next(request)

    app = Starlette(middleware=[Middleware(BaseHTTPMiddleware, dispatch=slow)], routes=[
        Route("/contacts", contacts, methods=["GET", "POST"]),
        Route("/contacts/{cid}/matters", matters),
        Route("/users", users),
        Route("/logs", logs, methods=["GET", "POST"]),
        Route("/logs/{lid}", log_one, methods=["PATCH"]),
    ])
    app.state.notebook = st
    return app
