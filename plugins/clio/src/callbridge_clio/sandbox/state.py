"""The Clio sandbox's data, in memory: seeding, tokens, the rate limit and the clock.

Time comes from an injected :class:`callbridge.clock.Clock` (the system clock by
default): record stamps, token expiry, the rate-limit window and the expiry of
pre-signed storage URLs all read it, so one fake clock can drive the host and the
sandbox together.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callbridge.clock import SYSTEM, Clock

from callbridge_clio.sandbox.fields import SearchMode

#: The documented credentials of every sandbox (they open nothing but a sandbox).
CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
#: Where pre-signed uploads go unless told otherwise: an origin of its own, as S3 is.
STORAGE_HOST = "https://clio-sandbox-documents.s3.amazonaws.com"
#: The first id of the folders Clio makes for the account, each matter and each contact
#: (their own range, so seeding a firm gives contacts and matters the same ids as before).
FOLDER_IDS = 900001


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class RateWindow:
    started: float  # Unix time
    used: int = 0


@dataclass
class SandboxState:
    """In-memory Clio data. Seed it with the ``add_*`` methods; read it back in tests.

    ``host`` is the origin the sandbox names in the URLs it hands out (paging links);
    ``storage_host`` the origin of the pre-signed upload URLs. ``search_mode`` is how
    the contacts ``query`` matches text (see :func:`~callbridge_clio.sandbox.fields.text_matches`).
    ``rate_limit`` is Clio's per-token limit, ``(requests, per_seconds)`` in fixed
    windows (None: headers without a limit enforced).
    """

    host: str = "https://app.clio.com"
    storage_host: str = STORAGE_HOST
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    token_lifetime: int = 2592000
    clock: Clock = SYSTEM
    search_mode: SearchMode = "substring"
    rate_limit: tuple[int, float] | None = (50, 60.0)
    put_url_lifetime: int = 600
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    matters: dict[int, dict[str, Any]] = field(default_factory=dict)
    relationships: dict[int, dict[str, Any]] = field(default_factory=dict)
    communications: dict[int, dict[str, Any]] = field(default_factory=dict)
    activities: dict[int, dict[str, Any]] = field(default_factory=dict)
    documents: dict[int, dict[str, Any]] = field(default_factory=dict)
    folders: dict[int, dict[str, Any]] = field(default_factory=dict)
    custom_fields: dict[int, dict[str, Any]] = field(default_factory=dict)
    activity_descriptions: dict[int, dict[str, Any]] = field(default_factory=dict)
    webhooks: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: The webhook requests Clio would have made (:mod:`.webhooks`), for a test to deliver.
    outbox: list[Any] = field(default_factory=list)
    storage: dict[str, bytes] = field(default_factory=dict)
    storage_requests: list[dict[str, Any]] = field(default_factory=list)
    storage_down: bool = False  # the storage answers 503 (an upload that keeps failing)
    #: The next this-many "mark uploaded" requests answer UploadTimeoutError (Clio's
    #: verification timing out); the document stays unmarked.
    upload_timeouts: int = 0
    # Reads of an unfinished document leave out its put_url: whether Clio hands the
    # URL out again after the create is not documented.
    put_url_on_create_only: bool = False
    # The most records a page holds. Clio's cap is 200; a smaller one lets a test page
    # through a few seeded records and see `meta.paging.next` cursors.
    max_page_size: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (Unix)
    refresh_tokens: dict[str, int] = field(default_factory=dict)  # refresh token -> user id
    codes: dict[str, tuple[int, str]] = field(default_factory=dict)  # code -> (user, redirect_uri)
    authorised_user: int | None = None
    windows: dict[str, RateWindow] = field(default_factory=dict)
    next_free_id: int = 1001  # the id the next record gets
    _folder_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(FOLDER_IDS))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_id(self) -> int:
        with self._lock:
            self.next_free_id += 1
            return self.next_free_id - 1

    def now(self) -> str:
        return stamp(self.clock.now())

    def unix(self) -> float:
        return self.clock.now().timestamp()

    # --- the rate limit ----------------------------------------------------------------

    def admit(self, token: str) -> tuple[bool, dict[str, str]]:
        """Count one request against the token's window: (admitted, the X-RateLimit-* headers,
        with Retry-After when refused)."""
        limit, per = self.rate_limit or (10**6, 60.0)
        now = self.unix()
        with self._lock:
            window = self.windows.get(token)
            if window is None or now >= window.started + per:
                window = self.windows[token] = RateWindow(started=now)
            admitted = window.used < limit
            if admitted:
                window.used += 1
            reset = window.started + per
            headers = {"X-RateLimit-Limit": str(limit),
                       "X-RateLimit-Remaining": str(max(0, limit - window.used)),
                       "X-RateLimit-Reset": str(math.ceil(reset))}
        if not admitted:
            headers["Retry-After"] = str(max(1, math.ceil(reset - now)))
        return admitted, headers

    # --- pre-signed storage ---------------------------------------------------------

    def sign(self, key: str, issued: str, content_type: str) -> str:
        """The signature of an upload URL: over its key, its date and the headers it needs."""
        text = f"{key}\n{issued}\n{content_type}\nAES256"
        return hmac.new(self.client_secret.encode(), text.encode(), hashlib.sha256).hexdigest()

    def put_url(self, key: str, content_type: str) -> str:
        issued = self.clock.now().strftime("%Y%m%dT%H%M%SZ")
        return (f"{self.storage_host}/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={issued}"
                f"&X-Amz-Expires={self.put_url_lifetime}"
                "&X-Amz-SignedHeaders=content-type%3Bhost%3Bx-amz-server-side-encryption"
                f"&X-Amz-Signature={self.sign(key, issued, content_type)}")

    # --- seeding ---------------------------------------------------------------------

    def root_folder(self) -> int:
        """The account's one root folder (made on first use)."""
        for fid, folder in self.folders.items():
            if folder["root"]:
                return fid
        return self._folder("Root", None, root=True)

    def _folder(self, name: str, parent: int | None, *, root: bool = False,
                matter: int | None = None, contact: int | None = None) -> int:
        with self._lock:
            fid = next(self._folder_ids)
        self.folders[fid] = {
            "id": fid, "etag": f'"{fid}-1"', "type": "Folder", "name": name, "root": root,
            "parent": {"id": parent, "type": "Folder"} if parent is not None else None,
            "matter": {"id": matter} if matter is not None else None,
            "contact": {"id": contact} if contact is not None else None,
            "locked": False, "created_at": self.now(), "updated_at": self.now(),
            "external_properties": []}
        return fid

    def add_folder(self, name: str, parent: int) -> int:
        """A folder inside folder ``parent`` (of the same matter or contact)."""
        above = self.folders[parent]
        return self._folder(name, parent, matter=(above["matter"] or {}).get("id"),
                            contact=(above["contact"] or {}).get("id"))

    def add_user(self, name: str, email: str, *, authorised: bool = False,
                 enabled: bool = True, time_zone: str = "America/New_York") -> int:
        uid = self.next_id()
        first, _, last = name.partition(" ")
        self.users[uid] = {"id": uid, "etag": f'"{uid}-1"', "name": name, "first_name": first,
                           "last_name": last, "email": email, "enabled": enabled,
                           "time_zone": time_zone, "subscription_type": "Attorney",
                           "roles": [], "account_owner": authorised,
                           "created_at": self.now(), "updated_at": self.now()}
        if authorised or self.authorised_user is None:
            self.authorised_user = uid
        return uid

    def add_contact(self, first: str, last: str, phones: list[str] | tuple[str, ...] = (),
                    emails: list[str] | tuple[str, ...] = (), *, updated_at: str | None = None,
                    custom_fields: dict[int, Any] | None = None) -> int:
        cid = self.next_id()
        when = updated_at or self.now()
        numbers = [{"id": self.next_id(), "number": p, "name": "Work", "primary": i == 0}
                   for i, p in enumerate(phones)]
        addresses = [{"id": self.next_id(), "address": e, "name": "Work", "primary": i == 0}
                     for i, e in enumerate(emails)]
        name = f"{first} {last}".strip()
        self.contacts[cid] = {
            "id": cid, "etag": f'"{cid}-1"', "type": "Person", "first_name": first,
            "last_name": last, "name": name, "created_at": when, "updated_at": when,
            "is_client": True, "phone_numbers": numbers, "email_addresses": addresses,
            "primary_phone_number": phones[0] if phones else None,
            "primary_email_address": emails[0] if emails else None,
            "custom_field_values": self._cf_values(custom_fields),
            "folder": {"id": self._folder(name or "Contact", self.root_folder(), contact=cid)},
        }
        return cid

    def add_matter(self, client_id: int, description: str, *, status: str = "Open",
                   close_date: str | None = None, custom_fields: dict[int, Any] | None = None,
                   related: dict[int, str] | None = None, updated_at: str | None = None) -> int:
        """A matter of ``client_id``; ``related`` maps contact ids to their role on it."""
        mid = self.next_id()
        client = self.contacts[client_id]
        number = f"{mid:05d}-{client['last_name']}"
        when = updated_at or self.now()
        self.matters[mid] = {
            "id": mid, "etag": f'"{mid}-1"', "number": mid, "display_number": number,
            "description": description, "status": status, "client_id": client_id,
            "client": {"id": client_id, "name": client["name"]}, "open_date": "2026-01-05",
            "close_date": close_date, "pending_date": None, "created_at": when,
            "updated_at": when, "billable": True,
            "custom_field_values": self._cf_values(custom_fields),
            "folder": {"id": self._folder(number, self.root_folder(), matter=mid)}}
        for contact_id, role in (related or {}).items():
            self.relate(contact_id, mid, role)
        return mid

    def relate(self, contact_id: int, matter_id: int, description: str = "Related party") -> int:
        rid = self.next_id()
        m = self.matters[matter_id]
        self.relationships[rid] = {
            "id": rid, "etag": f'"{rid}-1"', "description": description,
            "created_at": self.now(), "updated_at": self.now(),
            "contact": {"id": contact_id, "name": self.contacts[contact_id]["name"]},
            "matter": {k: m[k] for k in ("id", "display_number", "description", "status")}}
        return rid

    def touch(self, table: dict[int, dict[str, Any]], record_id: int, **changes: Any) -> None:
        """Change a seeded record as a user would in Clio (its update time moves)."""
        record = table[record_id]
        before = record.get("status")
        record.update(changes, updated_at=self.now())
        record["etag"] = f'"{record_id}-{secrets.token_hex(2)}"'
        if table is self.matters:
            from callbridge_clio.sandbox.webhooks import matter_changed

            matter_changed(self, record, before)

    def add_custom_field(self, name: str, parent_type: str, field_type: str = "checkbox") -> int:
        fid = self.next_id()
        self.custom_fields[fid] = {"id": fid, "etag": f'"{fid}-1"', "name": name,
                                   "field_type": field_type, "parent_type": parent_type,
                                   "displayed": True, "deleted": False, "required": False,
                                   "created_at": self.now(), "updated_at": self.now()}
        return fid

    def close_matter(self, matter_id: int, on: str) -> None:
        """Close a matter as a user would (its status, close date and update time move)."""
        self.touch(self.matters, matter_id, status="Closed", close_date=on)

    def reopen_matter(self, matter_id: int) -> None:
        self.touch(self.matters, matter_id, status="Open", close_date=None)

    def set_field(self, table: dict[int, dict[str, Any]], record_id: int, field_id: int,
                  value: object) -> None:
        """Set (or, with None, clear) a custom field's value on a contact or a matter."""
        record = table[record_id]
        values = [v for v in record["custom_field_values"]
                  if v["custom_field"]["id"] != field_id]
        if value is not None:
            values += self._cf_values({field_id: value})
        self.touch(table, record_id, custom_field_values=values)

    def add_activity_description(self, name: str) -> int:
        aid = self.next_id()
        self.activity_descriptions[aid] = {"id": aid, "etag": f'"{aid}-1"', "name": name,
                                           "type": "User", "default": False,
                                           "created_at": self.now(), "updated_at": self.now()}
        return aid

    def issue_token(self, user_id: int | None = None, *, lifetime: int | None = None,
                    access_token: str | None = None) -> dict[str, Any]:
        """A token pair for a user, as /oauth/token would answer.

        ``access_token`` fixes the access token's value (a test client's placeholder
        credential, or the served sandbox's ``--token``); by default it is random.
        """
        uid = user_id or self.authorised_user
        if uid is None:
            raise LookupError("the sandbox has no user: seed one first")
        access, refresh = access_token or secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        life = lifetime if lifetime is not None else self.token_lifetime
        self.tokens[access] = self.unix() + life
        self.refresh_tokens[refresh] = uid
        return {"token_type": "bearer", "access_token": access, "expires_in": life,
                "refresh_token": refresh}

    def expire_tokens(self) -> None:
        for token in self.tokens:
            self.tokens[token] = 0.0

    def _cf_values(self, values: dict[int, Any] | None) -> list[dict[str, Any]]:
        out = []
        for fid, value in (values or {}).items():
            f = self.custom_fields[fid]
            out.append({"id": f"{f['field_type']}-{fid}", "value": value, "field_name": f["name"],
                        "field_type": f["field_type"], "custom_field": {"id": fid}})
        return out
