"""The sandbox's data: a firm in memory, seeded by methods or from a fixture file."""

from __future__ import annotations

import itertools
import json
import secrets
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from callbridge.clock import SYSTEM, Clock

from callbridge_smokeball.api import to_ticks

#: Resource kinds the sandbox keeps, each a dict of records by id.
KINDS = ("contacts", "matters", "staff", "activitycodes", "fees", "tasks", "memos", "files")
#: The ``RequestId`` header of the request being answered (webhooks the write causes carry it).
REQUEST_ID: ContextVar[str | None] = ContextVar("smokeball_sandbox_request_id", default=None)
#: The webhook event a create of each kind causes (kinds without one cause none).
CREATED_EVENT = {"contacts": "contact.created", "fees": "fee.created",
                 "tasks": "task.created", "memos": "memo.created",
                 "activitycodes": "activitycode.created"}
#: Smokeball's resource name of each kind, as an ``error`` event's payload names it.
RESOURCE_NAME = {"contacts": "contact", "fees": "fee", "tasks": "task", "memos": "memo",
                 "activitycodes": "activitycode", "files": "file"}


@dataclass
class SandboxState:
    """One Smokeball account. Writes are *accepted* (202) and become readable
    ``write_delay`` seconds later (of ``clock``); ``lose_next_writes`` accepted
    writes never become readable at all.

    ``rate`` and ``burst`` are the token bucket every request of the partner's API
    key draws from (Smokeball's default: 5 per second, burst 5); a request beyond it
    gets 429. ``retry_after`` adds a ``Retry-After`` header to those answers
    (Smokeball's documentation does not say whether it sends one).
    """

    clock: Clock = SYSTEM
    host: str = "https://api.smokeball.com"
    auth_host: str = "https://auth.smokeball.com"
    storage_host: str = "https://smokeball-sandbox-files.s3.amazonaws.com"
    api_key: str = "sandbox-api-key"
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    account_id: str = "00000000-0000-4000-8000-00000000acc7"
    token_lifetime: int = 3600
    write_delay: float = 0.0
    rate: float = 5.0
    burst: int = 5
    rate_limited: bool = True
    retry_after: float | None = None
    max_page_size: int = 500
    lose_next_writes: int = 0
    storage_fault: int | None = None  # a status every storage PUT gets (an outage)
    #: The next N accepted writes fail later: never readable, reported by an ``error`` webhook.
    fail_next_writes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: Webhook subscriptions by id, and the notifications waiting to be sent
    #: (:mod:`callbridge_smokeball.sandbox.webhooks`).
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS})
    uploads: dict[str, bytes] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lost: list[tuple[str, str]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _bucket: dict[str, float] = field(default_factory=dict)

    # --- ids, time, visibility -------------------------------------------------------

    def new_id(self) -> str:
        """Ids in UUID form, in order, so cassettes recorded twice read the same."""
        n = next(self._ids)
        return f"{n:08x}-0000-4000-8000-{n:012x}"

    def now(self) -> datetime:
        return self.clock.now()

    def visible(self, record: dict[str, Any]) -> bool:
        return bool(record.get("_visible_at", 0.0) <= self.clock.monotonic()) \
            and not record.get("_lost")

    def put(self, kind: str, record: dict[str, Any], *, accepted: bool = False) -> str:
        """Keep ``record`` (a write answered 202 when ``accepted``); its id."""
        with self._lock:
            if "id" not in record:
                record["id"] = self.new_id()
            self.touch(record, kind)
            if accepted:
                record["_visible_at"] = self.clock.monotonic() + self.write_delay
                fails = self.fail_next_writes > 0
                if fails:
                    self.fail_next_writes -= 1
                    record["_lost"] = True
                    self.failed.append((kind, record["id"]))
                elif self.lose_next_writes > 0:
                    self.lose_next_writes -= 1
                    record["_lost"] = True
                    self.lost.append((kind, record["id"]))
                self._notify(kind, record, failed=fails)
            self.data[kind][record["id"]] = record
            return str(record["id"])

    def _notify(self, kind: str, record: dict[str, Any], *, failed: bool) -> None:
        """Queue the webhook an accepted write causes, due when the write is done: its
        ``*.created`` event, or an ``error`` event for a write that failed (a lost write
        causes none)."""
        if failed:
            event = "error"
            payload: dict[str, Any] = {
                "message": f"{RESOURCE_NAME.get(kind, kind).title()} could not be saved.",
                "resourceName": RESOURCE_NAME.get(kind, kind), "resourceId": record["id"]}
        elif kind in CREATED_EVENT and not record.get("_lost"):
            event = CREATED_EVENT[kind]
            payload = {"id": record["id"]}
            matter = record.get("matterId") or record.get("_matterId")
            if matter and kind != "tasks":
                payload["matterId"] = matter
        else:
            return
        self.outbox.append({"type": event, "payload": payload, "request_id": REQUEST_ID.get(),
                            "due": record["_visible_at"]})

    def touch(self, record: dict[str, Any], kind: str | None = None) -> None:
        """Note a change: ``_updated`` (ticks) for ``UpdatedSince``, and ``lastUpdated``
        where the published schema has it (ticks on contacts and tasks, a date on memos)."""
        record["_updated"] = to_ticks(self.now())
        if "lastUpdated" in record or kind in ("contacts", "tasks"):
            record["lastUpdated"] = record["_updated"]
        elif kind == "memos":
            record["lastUpdated"] = self.now().isoformat()

    def expiry(self) -> str:
        """When an upload URL stops working: 15 minutes from now."""
        return (self.now() + timedelta(minutes=15)).isoformat()

    def get(self, kind: str, record_id: str) -> dict[str, Any] | None:
        record = self.data[kind].get(record_id)
        return record if record is not None and self.visible(record) else None

    def rows(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.data[kind].values() if self.visible(r)]

    # --- the partner's token bucket ----------------------------------------------------

    def admit(self) -> bool:
        """Take one token from the bucket; False when it is empty (a 429)."""
        if not self.rate_limited:
            return True
        with self._lock:
            now = self.clock.monotonic()
            level = self._bucket.get("level", float(self.burst))
            since = now - self._bucket.get("at", now)
            level = min(float(self.burst), level + since * self.rate)
            self._bucket["at"] = now
            if level < 1.0:
                self._bucket["level"] = level
                return False
            self._bucket["level"] = level - 1.0
            return True

    # --- tokens --------------------------------------------------------------------------

    def issue_token(self, *, access_token: str | None = None, lifetime: int | None = None,
                    refresh: bool = True, grant: str = "authorization_code") -> dict[str, Any]:
        """A token as the token endpoint would answer it, without a browser."""
        access = access_token or f"sbx-at-{secrets.token_hex(12)}"
        life = self.token_lifetime if lifetime is None else lifetime
        self.tokens[access] = {"expires": self.clock.monotonic() + life, "grant": grant}
        token: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": life}
        if refresh:
            rt = f"sbx-rt-{secrets.token_hex(12)}"
            self.refresh_tokens[rt] = {"grant": grant}
            token["refresh_token"] = rt
        return token

    def token_valid(self, access: str) -> bool:
        entry = self.tokens.get(access)
        return entry is not None and entry["expires"] > self.clock.monotonic()

    # --- seeding -------------------------------------------------------------------------

    def add_staff(self, first: str, last: str, email: str, *, former: bool = False,
                  enabled: bool = True) -> str:
        staff_id = self.new_id()
        return self.put("staff", {
            "id": staff_id, "firstName": first, "lastName": last, "email": email,
            "former": former, "enabled": enabled, "userId": f"user-{staff_id[-6:]}" if enabled
            else None})

    def add_contact(self, first: str | None = None, last: str | None = None, *,
                    company: str | None = None, phone: tuple[str, str] | None = None,
                    phone2: tuple[str, str] | None = None, cell: tuple[str, str] | None = None,
                    email: str | None = None, updated: datetime | None = None) -> str:
        """A person (or a company with ``company``); numbers as ``(areaCode, number)``."""
        def number(pair: tuple[str, str] | None) -> dict[str, str] | None:
            return {"areaCode": pair[0], "number": pair[1]} if pair else None

        if company is not None:
            body: dict[str, Any] = {"company": {"name": company, "phone": number(phone),
                                                "email": email}}
        else:
            body = {"person": {"firstName": first, "lastName": last, "email": email,
                               "phone": number(phone), "phone2": number(phone2),
                               "cell": number(cell)}}
        contact_id = self.put("contacts", {**body, "isDeleted": False})
        if updated is not None:
            record = self.data["contacts"][contact_id]
            record["_updated"] = record["lastUpdated"] = to_ticks(updated)
        return contact_id

    def add_matter(self, title: str, clients: list[str], *, status: str = "Open",
                   other_sides: list[str] = (), number: str | None = None) -> str:  # type: ignore[assignment]
        matter_id = self.new_id()
        return self.put("matters", {
            "id": matter_id, "title": title, "status": status,
            "number": number or f"SB-{len(self.data['matters']) + 1:04d}",
            "clients": [{"id": c} for c in clients],
            "otherSides": [{"id": c} for c in other_sides]})

    def add_activity_code(self, code: str, *, description: str = "", billable: bool = True,
                          rate: float | None = None, type_: int = 1) -> str:
        body: dict[str, Any] = {"code": code, "description": description, "type": type_,
                                "isBillable": billable, "rateType": 0, "isDeleted": False}
        if rate is not None:
            body |= {"rateType": 1, "rate": rate}
        return self.put("activitycodes", body)

    def seed(self, fixture: dict[str, Any]) -> dict[str, str]:
        """Load a fixture (see ``seed.json`` beside this module); names -> ids."""
        ids: dict[str, str] = {}
        for key, s in fixture.get("staff", {}).items():
            ids[key] = self.add_staff(s["firstName"], s["lastName"], s["email"],
                                      former=s.get("former", False),
                                      enabled=s.get("enabled", True))
        for key, c in fixture.get("contacts", {}).items():
            pairs = {k: tuple(c[k]) for k in ("phone", "phone2", "cell") if c.get(k)}
            ids[key] = self.add_contact(c.get("firstName"), c.get("lastName"),
                                        company=c.get("company"), email=c.get("email"),
                                        **pairs)  # type: ignore[arg-type]
        for key, m in fixture.get("matters", {}).items():
            ids[key] = self.add_matter(m["title"], [ids[c] for c in m.get("clients", [])],
                                       status=m.get("status", "Open"),
                                       other_sides=[ids[c] for c in m.get("otherSides", [])])
        for key, a in fixture.get("activityCodes", {}).items():
            ids[key] = self.add_activity_code(a["code"], description=a.get("description", ""),
                                              billable=a.get("isBillable", True),
                                              rate=a.get("rate"))
        for token in fixture.get("tokens", []):
            self.issue_token(access_token=token, lifetime=10**9)
        return ids

    def seed_file(self, path: Path | str) -> dict[str, str]:
        return self.seed(json.loads(Path(path).read_text(encoding="utf-8")))

    def public(self, record: dict[str, Any]) -> dict[str, Any]:
        """A record as answered: no sandbox bookkeeping keys."""
        return {k: v for k, v in record.items() if not k.startswith("_")}
