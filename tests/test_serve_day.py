"""A day of three firms posted to `callbridge serve`, a real process on loopback, with the
Clio sandbox (and, for one firm, a second app) behind it: every event's outcome per app as
expected, nothing lost, nothing logged twice, every refused request in the quarantine."""

from __future__ import annotations

import base64
import collections
import json
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from callbridge.ledger import Ledger
from callbridge.serve.auth import token_hash

from tests.conftest import Notebook
from tests.serving import signed, start_server

pytest.importorskip("callbridge_clio")
from callbridge_clio.records import MARKER
from callbridge_clio.sandbox import SandboxState, create_app

KEYS = {"acme": "acme-pbx-key", "globex": "globex-pbx-key", "initech": "initech-pbx-key"}
DAY = "2026-03-02T"
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n").decode()
DANA, SAM, LEE, STRANGER, OWN = ("+1 212 555 0142", "+1 646 555 0111", "+1 212 555 0150",
                                 "+1 212 555 0177", "+1 212 555 0100")


def call(event_id: str, number: str, hour: int, state: str = "ended", seq: int = 3,
         outcome: str = "completed", **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "kind": "call", "id": event_id, "direction": "inbound", "state": state, "sequence": seq,
        "external": {"number": number}, "internal": {"extension": "101"},
        "started_at": f"{DAY}{hour:02d}:00:00+00:00", **extra}
    if state != "ringing":
        event["answered_at"] = f"{DAY}{hour:02d}:00:10+00:00"
    if state == "ended":
        event |= {"ended_at": f"{DAY}{hour:02d}:04:00+00:00", "outcome": outcome}
    return event


def sms(event_id: str, number: str, hour: int, **extra: Any) -> dict[str, Any]:
    return {"kind": "sms", "id": event_id, "direction": "inbound", "external": {"number": number},
            "sent_at": f"{DAY}{hour:02d}:30:00+00:00", "body": "Running late, call me", **extra}


def fax(event_id: str, number: str, hour: int) -> dict[str, Any]:
    return {"kind": "fax", "id": event_id, "direction": "inbound", "external": {"number": number},
            "sent_at": f"{DAY}{hour:02d}:45:00+00:00", "page_count": 1,
            "document": {"content": PDF, "filename": "lease.pdf"}}


#: What each firm's phone system sends, in order: (request body, expected result per event).
POSTS: dict[str, list[tuple[Any, list[str]]]] = {
    "acme": [
        (call("a-call-1", DANA, 9, "ringing", 1), ["new"]),
        (call("a-call-1", DANA, 9, "in_progress", 2), ["revision"]),
        (call("a-call-1", DANA, 9), ["revision"]),
        (call("a-call-2", SAM, 10), ["new"]),                       # ended first ...
        (call("a-call-2", SAM, 10, "ringing", 1), ["duplicate"]),   # ... a stale copy after
        (call("a-call-3", LEE, 17, "in_progress", 2), ["new"]),     # still going at day's end
        ([sms("a-sms-1", DANA, 11), fax("a-fax-1", LEE, 12)], ["new", "new"]),
        (sms("a-sms-2", SAM, 13), ["new"]),
        (sms("a-sms-2", SAM, 13), ["duplicate"]),                   # the sender's retry
        (call("a-call-4", STRANGER, 14, outcome="missed"), ["new"]),
        (call("a-call-5", OWN, 15), ["new"]),                       # the firm's own number
    ],
    "globex": [
        (call("g-call-1", DANA, 9), ["new"]),
        (sms("g-sms-1", SAM, 10, direction="outbound", status="pending"), ["new"]),
        (sms("g-sms-1", SAM, 10, direction="outbound", status="delivered"), ["revision"]),
        (call("g-call-2", LEE, 11, "in_progress", 2), ["new"]),
        (call("g-call-2", LEE, 11), ["revision"]),
        (call("g-call-2", LEE, 11, "ringing", 1), ["duplicate"]),
    ],
    "initech": [
        (call("i-call-1", STRANGER, 9), ["new"]),  # exclusive association: no contact, no log
        (call("i-call-2", DANA, 10), ["new"]),
        (fax("i-fax-1", STRANGER, 11), ["new"]),
    ],
}
LOGGED = ("logged", None)
#: Every acknowledged event's outcome in each of its firm's apps.
EXPECTED: dict[tuple[str, str], dict[str, tuple[str, str | None]]] = {
    ("acme", "a-call-1"): {"clio": LOGGED},
    ("acme", "a-call-2"): {"clio": LOGGED},
    ("acme", "a-call-3"): {},  # in progress: nothing is logged yet
    ("acme", "a-sms-1"): {"clio": LOGGED},
    ("acme", "a-fax-1"): {"clio": LOGGED},
    ("acme", "a-sms-2"): {"clio": LOGGED},
    ("acme", "a-call-4"): {"clio": LOGGED},  # logged without a contact
    ("acme", "a-call-5"): {"clio": ("skipped", "internal")},
    ("globex", "g-call-1"): {"clio": LOGGED, "crm": LOGGED},
    ("globex", "g-sms-1"): {"clio": LOGGED, "crm": LOGGED},
    ("globex", "g-call-2"): {"clio": LOGGED, "crm": LOGGED},
    ("initech", "i-call-1"): {"clio": ("skipped", "no_contact")},
    ("initech", "i-call-2"): {"clio": LOGGED},
    ("initech", "i-fax-1"): {"clio": ("skipped", "no_contact")},
}


MONITOR_TOKEN = "cbo_monitoring-token-for-the-day-0123456789"


def settings(tmp_path: Path, clio: str, notebook: str) -> Path:
    text = f"""
    [ledger]
    url = "sqlite:///{tmp_path / 'ledger.db'}"
    lease_seconds = 5

    [serve]
    max_body_bytes = 65536

    [operators.monitor]              # /metrics asks for an operator of every tenant
    token_sha256 = "{token_hash(MONITOR_TOKEN)}"
    tenants = "all"
    """
    for tenant in KEYS:
        text += f"""
    [tenants.{tenant}]
    own_numbers = ["{OWN}"]
    extensions = {{ "101" = "ann@acme.example" }}
    [tenants.{tenant}.sources.pbx]
    secret_env = "{tenant.upper()}_PBX_KEY"
    [tenants.{tenant}.apps.clio]
    credentials_env = "ACME_CLIO"
    exclusive_contact_association = {"true" if tenant == "initech" else "false"}
    [tenants.{tenant}.apps.clio.options]
    api_base_url = "{clio}/api/v4"
    """
    text += f"""
    [tenants.globex.apps.crm]
    plugin = "notebook"
    [tenants.globex.apps.crm.options]
    base_url = "{notebook}"
    """
    path = tmp_path / "callbridge.toml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def clio() -> Iterator[SandboxState]:
    from callbridge.faults import serve_in_thread

    state = SandboxState(rate_limit=None)
    app = create_app(state)
    with serve_in_thread(app) as url, serve_in_thread(app) as storage:
        state.host, state.storage_host = url, storage
        state.add_user("Ann Lee", "ann@acme.example", authorised=True)
        dana = state.add_contact("Dana", "Whitfield", ["(212) 555-0142"])
        state.add_contact("Sam", "Ortiz", ["646.555.0111"])
        state.add_contact("Lee", "Park", ["212-555-0150"])
        state.add_matter(dana, "Lease dispute")
        yield state


def open_ledger(tmp_path: Path, key: str) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", secret_key=key)


def wait_until_settled(ledger: Ledger, deliveries: int, timeout: float = 60) -> list[Any]:
    """Poll the ledger (the server is another process) until every delivery has ended."""
    deadline = time.monotonic() + timeout
    while True:
        views = ledger.history(limit=10**6)
        if len(views) >= deliveries and all(
                v.status not in ("pending", "waiting") for v in views):
            return views
        assert time.monotonic() < deadline, [(v.source_id, v.app, v.status) for v in views]
        time.sleep(0.1)


@pytest.mark.slow
def test_a_day_of_three_firms_through_the_server(
        tmp_path: Path, clio: SandboxState, notebook: Notebook, secret_key: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for tenant, key in KEYS.items():
        monkeypatch.setenv(f"{tenant.upper()}_PBX_KEY", key)
    monkeypatch.setenv("ACME_CLIO_CLIENT_ID", clio.client_id)
    monkeypatch.setenv("ACME_CLIO_CLIENT_SECRET", clio.client_secret)
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "clio,notebook")
    notebook.state.add_contact("Dana Whitfield", ["212-555-0142"])
    notebook.state.add_contact("Lee Park", ["212-555-0150"])
    config = settings(tmp_path, clio.host, notebook.url)
    ledger = open_ledger(tmp_path, secret_key)
    ledger.migrate()
    for tenant in KEYS:
        ledger.token_set(tenant, "clio", clio.issue_token())
    proc, url = start_server(config)
    first: tuple[bytes, dict[str, str]] | None = None
    try:
        with httpx2.Client(base_url=url, timeout=30) as client:
            for tenant, posts in POSTS.items():
                for body, results in posts:
                    raw, headers = signed(body, KEYS[tenant])
                    answer = client.post(f"/v1/sources/{tenant}/pbx", content=raw, headers=headers)
                    assert answer.status_code == 200, answer.text
                    assert [e["result"] for e in answer.json()["events"]] == results, body
                    first = first or (raw, headers)
            # A captured request replayed within the window: a duplicate, acknowledged.
            replayed = client.post("/v1/sources/acme/pbx", content=first[0], headers=first[1])
            assert replayed.json()["events"][0]["result"] == "duplicate"
            refused = refuse_the_bad_ones(client)
            views = wait_until_settled(ledger, sum(len(apps) for apps in EXPECTED.values()))
            metrics = client.get(
                "/metrics", headers={"Authorization": f"Bearer {MONITOR_TOKEN}"}).text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    # Every acknowledged event is in the ledger once, with the expected outcome in each app.
    outcomes: dict[tuple[str, str], dict[str, tuple[str, str | None]]] = {
        key: {} for key in EXPECTED}
    for view in views:
        outcomes[(view.tenant, view.source_id)][view.app] = (view.status, view.reason)
    assert outcomes == EXPECTED
    with ledger.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(sa.table("events"))).scalar()
    assert stored == len(EXPECTED)  # nothing refused was stored
    # Nothing logged twice: one communication per event in Clio, one log per event in the CRM.
    markers = collections.Counter(
        prop["value"] for comm in clio.communications.values()
        for prop in comm.get("external_properties", []) if prop["name"] == MARKER)
    logged_in_clio = sum(1 for apps in EXPECTED.values() if apps.get("clio") == LOGGED)
    assert len(markers) == logged_in_clio and set(markers.values()) == {1}
    crm = collections.Counter(entry["marker"] for entry in notebook.state.logs.values())
    assert len(crm) == 3 and set(crm.values()) == {1}
    # Every refused request is in the quarantine, with its reason.
    from callbridge.quarantine import Quarantine
    kept = [e.reason for e in Quarantine(ledger).entries()]
    assert len(kept) == len(refused)
    for reason in refused:
        assert sum(r.startswith(reason) for r in kept) == 1, (reason, kept)
    assert 'callbridge_requests_refused_total{reason="unauthenticated",status="401"} 2.0' in metrics


def refuse_the_bad_ones(client: httpx2.Client) -> list[str]:
    """Requests the server must refuse; returns the quarantine reasons expected."""
    good = call("x-call-1", DANA, 16)
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = []
    raw, headers = signed(good, "not-the-key")
    cases.append(("acme", raw, headers, 401, "Callbridge-Signature: does not match"))
    raw, headers = signed(good, KEYS["acme"], at=time.time() - 600)  # a capture, replayed later
    cases.append(("acme", raw, headers, 401, "Callbridge-Signature: signed more than"))
    raw, headers = signed(b'{"kind": "call", "id": ', KEYS["acme"])
    cases.append(("acme", raw, headers, 400, "(json): not valid JSON"))
    raw, headers = signed(call("x-call-2", DANA, 16, notes="x" * 70000), KEYS["acme"])
    cases.append(("acme", raw, headers, 413, "(body): larger than 65536 bytes"))
    raw, headers = signed(good | {"tenant": "globex"}, KEYS["acme"])
    cases.append(("acme", raw, headers, 403, "tenant: names another tenant"))
    raw, headers = signed(good | {"direction": "sideways"}, KEYS["globex"])
    cases.append(("globex", raw, headers, 422, "direction: "))
    raw, headers = signed(good, KEYS["initech"])
    cases.append(("initech/fax-line", raw, headers, 404, "(path): no such source"))
    reasons = []
    for where, raw, headers, status, reason in cases:
        path = f"/v1/sources/{where}" if "/" in where else f"/v1/sources/{where}/pbx"
        answer = client.post(path, content=raw, headers=headers)
        assert answer.status_code == status, (where, answer.text)
        error = json.dumps(answer.json())
        assert reason.split(": ")[0] in error
        reasons.append(f"{status} {reason}")
    return reasons
