"""The call-history page over HTTP (no browser): signing in with an operator token, the
session cookie, CSRF and origin checks, tenant scope, escaping, and the manual-log form
going through the logging modes' API to the app."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from callbridge.engine import Engine
from callbridge.ledger import Ledger
from callbridge.plugins import Registry
from callbridge.serve.auth import token_hash
from callbridge.serve.history import routes
from callbridge.serve.history_session import COOKIE, SESSION_SECONDS
from callbridge.settings import Settings, SettingsSource
from callbridge.testing.clock import FakeClock
from starlette.applications import Starlette

from tests.modes_support import Book, call

pytestmark = pytest.mark.usefixtures("secret_key")

ANN = "cbo_ann-token-for-tests-only"
ROOT = "cbo_root-token-for-tests-only"
BASE = "http://history.test"


@dataclass
class Page:
    http: httpx2.AsyncClient
    engine: Engine
    clock: FakeClock
    source: SettingsSource

    async def sign_in(self, token: str = ANN) -> httpx2.Response:
        return await self.http.post("/history/login", data={"token": token})

    async def csrf(self, path: str) -> str:
        page = await self.http.get(path)
        assert page.status_code == 200, page.text
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found
        return found.group(1)


def settings(apps: Mapping[str, Book], extra_app: Mapping[str, Any] | None = None,
             operators: Mapping[str, Any] | None = None) -> Settings:
    return Settings.model_validate({
        "operators": operators or {
            "ann": {"token_sha256": token_hash(ANN), "tenants": ["acme"]},
            "root": {"token_env": "HISTORY_ROOT_TOKEN", "tenants": "all"}},
        "tenants": {
            "acme": {"name": "Acme Law", "apps": {
                name: {"plugin": book.name, **(extra_app or {}).get(name, {})}
                for name, book in apps.items()}},
            "other": {"apps": {}}}})


@asynccontextmanager
async def page_for(tmp_path: Path, apps: Mapping[str, Book],
                   **kwargs: Any) -> AsyncIterator[Page]:
    registry = Registry()
    for book in apps.values():
        registry.add(book)
    source = SettingsSource(None, default=settings(apps, **kwargs))
    clock = FakeClock()
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", clock=clock)
    ledger.migrate()
    engine = Engine(settings=source, registry=registry, ledger=ledger, clock=clock)
    state = SimpleNamespace(runtime=SimpleNamespace(settings=source), engine=engine,
                            clock=clock, base_url=BASE)
    app = Starlette(routes=routes(state))  # type: ignore[arg-type]
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                  base_url=BASE) as http:
        try:
            yield Page(http, engine, clock, source)
        finally:
            await engine.aclose()
            ledger.close()


def two_matches() -> Book:
    book = Book()
    book.add("c1", "Ada Lovelace", "+12125550142")
    book.add("c2", "Ada L. (old)", "+12125550142")
    return book


async def test_a_visitor_is_sent_to_sign_in_and_a_wrong_token_is_refused(tmp_path: Path) -> None:
    async with page_for(tmp_path, {"crm": Book()}) as page:
        first = await page.http.get("/history/acme/")
        assert first.status_code == 303
        assert first.headers["location"] == "/history/login?next=/history/acme/"
        form = await page.http.get("/history/login")
        assert '<label for="token">Operator token</label>' in form.text
        wrong = await page.sign_in("cbo_not-a-token")
        assert wrong.status_code == 401 and COOKIE not in wrong.headers.get("set-cookie", "")
        assert 'role="alert"' in wrong.text and "cbo_not-a-token" not in wrong.text


async def test_signing_in_sets_a_strict_http_only_cookie_without_the_token(tmp_path: Path) -> None:
    async with page_for(tmp_path, {"crm": Book()}) as page:
        signed = await page.http.post("/history/login",
                                      data={"token": ANN, "next": "/history/acme/"})
        assert signed.status_code == 303 and signed.headers["location"] == "/history/acme/"
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        for flag in ("HttpOnly", "SameSite=strict", "Path=/history", f"Max-Age={SESSION_SECONDS}"):
            assert flag.lower() in cookie.lower()
        assert ANN not in cookie and token_hash(ANN) not in cookie
        # A next page elsewhere is never followed.
        elsewhere = await page.http.post("/history/login",
                                         data={"token": ANN, "next": "//evil.example/x"})
        assert elsewhere.headers["location"] == "/history/"


async def test_a_session_ends_when_it_expires_or_its_token_is_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HISTORY_ROOT_TOKEN", ROOT)
    async with page_for(tmp_path, {"crm": Book()}) as page:
        await page.sign_in(ROOT)
        assert (await page.http.get("/history/")).status_code == 200  # two firms: a list
        monkeypatch.setenv("HISTORY_ROOT_TOKEN", "cbo_rotated")
        assert (await page.http.get("/history/")).status_code == 303
        monkeypatch.setenv("HISTORY_ROOT_TOKEN", ROOT)
        assert (await page.http.get("/history/")).status_code == 200
        page.clock.advance(SESSION_SECONDS + 1)
        assert (await page.http.get("/history/")).status_code == 303


async def test_an_operator_sees_only_its_own_firms(tmp_path: Path) -> None:
    async with page_for(tmp_path, {"crm": Book()}) as page:
        await page.sign_in()
        home = await page.http.get("/history/")
        assert home.status_code == 303 and home.headers["location"] == "/history/acme/"
        other = await page.http.get("/history/other/")
        assert other.status_code == 403 and "may not see this firm" in other.text
        missing = await page.http.get("/history/acme/events/999")
        assert missing.status_code == 404 and "no event with this id" in missing.text
        huge = await page.http.get("/history/acme/events/" + "9" * 30)
        assert huge.status_code == 404
        nowhere = await page.http.get("/history/acme/nowhere")
        assert nowhere.status_code == 404 and "<h1>Not found</h1>" in nowhere.text
        slashless = await page.http.get("/history/acme")
        assert slashless.headers["location"] == "/history/acme/"


async def test_the_list_shows_each_event_with_its_outcome_per_app_and_why(tmp_path: Path) -> None:
    book = two_matches()
    async with page_for(tmp_path, {"crm": book, "hand": Book(name="hand")},
                        extra_app={"hand": {"automatic_logging": False}}) as page:
        await page.engine.ingest(call("c-1", external={"number": "+12125550142",
                                                       "name": "<b>Ada</b>"}))
        await page.engine.ingest(call("c-2", state="in_progress"))
        await page.engine.run_until_idle()
        await page.sign_in()
        listing = await page.http.get("/history/acme/")
    html = listing.text
    assert listing.status_code == 200
    assert listing.headers["content-security-policy"].startswith("default-src 'none'")
    assert "<caption>Events of Acme Law and their outcome in each app</caption>" in html
    assert '<th scope="col">crm</th>' in html and '<th scope="col">hand</th>' in html
    assert "Needs a contact" in html and "share this number; a user must choose" in html
    assert "does not log this firm&#39;s events automatically: log it by hand" in html
    assert "Logged automatically once the call has ended." in html
    assert "In progress" in html
    assert "<b>Ada</b>" not in html and "&lt;b&gt;Ada&lt;/b&gt;" in html


async def test_a_form_without_the_csrf_token_or_from_another_site_changes_nothing(
        tmp_path: Path) -> None:
    book = two_matches()
    async with page_for(tmp_path, {"crm": book}) as page:
        stored = await page.engine.ingest(call("c-1"))
        await page.engine.run_until_idle()
        await page.sign_in()
        path = f"/history/acme/events/{stored.event_pk}"
        token = await page.csrf(path)
        forged = await page.http.post(path + "/log", data={"app": "crm", "contact": "c1"})
        assert forged.status_code == 403 and "expired" in forged.text
        cross = await page.http.post(path + "/log", headers={"origin": "https://evil.example"},
                                     data={"csrf": token, "app": "crm", "contact": "c1"})
        assert cross.status_code == 403 and "another site" in cross.text
        page.http.cookies.clear()
        signed_out = await page.http.post(path + "/log",
                                          data={"csrf": token, "app": "crm", "contact": "c1"})
        assert signed_out.status_code == 401
    assert book.logs == []


async def test_choosing_a_candidate_logs_the_event_once(tmp_path: Path) -> None:
    book = two_matches()
    async with page_for(tmp_path, {"crm": book}) as page:
        stored = await page.engine.ingest(call("c-1"))
        await page.engine.run_until_idle()
        await page.sign_in()
        path = f"/history/acme/events/{stored.event_pk}"
        before = await page.http.get(path)
        assert "<legend>Choose the contact in crm</legend>" in before.text
        assert 'type="radio"' in before.text and "Ada L. (old)" in before.text
        token = await page.csrf(path)
        done = await page.http.post(path + "/log", data={"csrf": token, "app": "crm",
                                                         "contact": "c2"},
                                    headers={"origin": BASE})
        assert done.status_code == 303
        shown = await page.http.get(done.headers["location"])
        assert "Logged in crm by hand." in shown.text and 'role="status"' in shown.text
        assert "Logged in every app" in shown.text
        again = await page.http.post(path + "/log", data={"csrf": token, "app": "crm",
                                                          "contact": "c2"})
        assert again.status_code == 409 and "already logged" in again.text
    assert [w.contacts for w in book.logs] == [[("c2", "Ada L. (old)")]]


async def test_a_contact_that_is_no_candidate_is_refused_without_echoing_it(tmp_path: Path) -> None:
    book = two_matches()
    async with page_for(tmp_path, {"crm": book}) as page:
        stored = await page.engine.ingest(call("c-1"))
        await page.engine.run_until_idle()
        await page.sign_in()
        path = f"/history/acme/events/{stored.event_pk}"
        token = await page.csrf(path)
        refused = await page.http.post(path + "/log", data={
            "csrf": token, "app": "crm", "contact": "<i>c404</i>"})
        assert refused.status_code == 422 and 'role="alert"' in refused.text
        assert "c404" not in refused.text
    assert book.logs == []


async def test_notes_can_be_added_changed_and_cancelled_during_a_call(tmp_path: Path) -> None:
    book = Book()
    book.add("c1", "Ada Lovelace", "+12125550142")
    async with page_for(tmp_path, {"crm": book}) as page:
        stored = await page.engine.ingest(call("c-1", state="in_progress"))
        await page.sign_in()
        path = f"/history/acme/events/{stored.event_pk}"
        token = await page.csrf(path)
        opened = page.clock.now().isoformat()
        none = await page.http.post(path + "/notes", data={"csrf": token, "text": "  "})
        assert none.status_code == 422 and "Write the notes" in none.text
        for text in ("First thoughts.", "Wants a <b>call</b> back."):
            added = await page.http.post(path + "/notes", data={
                "csrf": token, "text": text, "app": "crm", "started_at": opened})
            assert added.status_code == 303
        shown = await page.http.get(path)
        assert 'aria-label="Your notes">Wants a &lt;b&gt;call&lt;/b&gt; back.</blockquote>' in shown.text
        assert "Change the notes" in shown.text and "First thoughts" not in shown.text
        view = page.engine.ledger.find_delivery("acme", "crm", stored.event_pk)
        assert view is not None and view.mode == "delayed"

        cancelled = await page.http.post(path + "/notes/cancel", data={"csrf": token})
        assert cancelled.status_code == 303
        after = await page.http.get(cancelled.headers["location"])
        assert "Notes cancelled." in after.text and "Your notes" not in after.text

        await page.engine.ingest(call("c-1"))
        page.clock.advance(60)  # past the grace period for notes
        await page.engine.run_until_idle()
    assert [(w.notes, w.state) for w in book.logs] == [(None, "ended")]


async def test_events_are_paged_newest_first_and_signing_out_ends_the_session(
        tmp_path: Path) -> None:
    from callbridge.serve.history_view import PAGE_SIZE

    async with page_for(tmp_path, {"crm": Book()}) as page:
        for n in range(PAGE_SIZE + 1):
            await page.engine.ingest(call(f"c-{n:03d}", state="in_progress",
                                          started_at=f"2026-01-05T{8 + n // 60:02d}:{n % 60:02d}:00Z"))
        await page.sign_in()
        first = await page.http.get("/history/acme/")
        rows = re.findall(r'<th scope="row"><a href="/history/acme/events/(\d+)"', first.text)
        assert len(rows) == PAGE_SIZE and rows[0] == str(PAGE_SIZE + 1) and "1" not in rows
        older = re.search(r'href="(/history/acme/\?before=\d+)">Older events', first.text)
        assert older
        second = await page.http.get(older.group(1))
        assert re.findall(r'<th scope="row"><a href="/history/acme/events/(\d+)"',
                          second.text) == ["1"] and "Older events" not in second.text

        token = await page.csrf("/history/acme/")
        out = await page.http.post("/history/logout", data={"csrf": token})
        assert out.headers["location"] == "/history/login?done=signedout"
        assert 'Max-Age=0' in out.headers["set-cookie"] or "expires" in out.headers["set-cookie"].lower()
        assert (await page.http.get("/history/acme/")).status_code == 303


async def test_notes_kept_past_the_end_log_the_call_later_with_them(tmp_path: Path) -> None:
    book = Book()
    book.add("c1", "Ada Lovelace", "+12125550142")
    async with page_for(tmp_path, {"crm": book}) as page:
        stored = await page.engine.ingest(call("c-1", state="in_progress"))
        await page.sign_in()
        path = f"/history/acme/events/{stored.event_pk}"
        token = await page.csrf(path)
        await page.http.post(path + "/notes", data={"csrf": token, "text": "Call back Monday.",
                                                    "app": "crm"})
        await page.engine.ingest(call("c-1", ended="2026-01-05T15:04:00Z"))
        await page.engine.run_until_idle()
        shown = await page.http.get(path)
        assert "the app&#39;s delay has passed." in shown.text
        assert 'Next: <time datetime="2026-01-05T15:09:00+00:00">2026-01-05 15:09</time>' in shown.text
        assert "Cancel the notes" in shown.text and "still logged later" in shown.text
        assert book.logs == []
        page.clock.advance(10 * 60)
        await page.engine.run_until_idle()
    assert [(w.notes, w.state) for w in book.logs] == [("Call back Monday.", "ended")]


async def test_notes_name_the_contact_chosen_in_an_app_checked_with_the_app(tmp_path: Path) -> None:
    book = Book()
    book.add("c1", "Ada Lovelace", "+12125550142")
    book.add("c2", "Ada's assistant", "+12125550142")
    async with page_for(tmp_path, {"crm": book}) as page:
        stored = await page.engine.ingest(call("c-1", state="in_progress"))
        await page.sign_in()
        path = f"/history/acme/events/{stored.event_pk}"
        assert "Contact id in crm" in (await page.http.get(path)).text
        token = await page.csrf(path)
        wrong = await page.http.post(path + "/notes", data={
            "csrf": token, "text": "Urgent.", "app": "crm", "contact:crm": "c404"})
        assert wrong.status_code == 422 and "c404" not in wrong.text
        chosen = await page.http.post(path + "/notes", data={
            "csrf": token, "text": "Urgent.", "app": "crm", "contact:crm": "c2"})
        assert chosen.status_code == 303
        await page.engine.ingest(call("c-1"))
        page.clock.advance(60 * 60)
        await page.engine.run_until_idle()
    assert [(w.contacts, w.notes) for w in book.logs] == [([("c2", "Ada's assistant")], "Urgent.")]
