"""`callbridge sandbox clio` on its own: seeded by flags or a fixture file, a token without
a browser, its own host in every URL it hands out, the storage on another origin."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from callbridge_clio.sandbox import CLIENT_ID, CLIENT_SECRET, SandboxState
from callbridge_clio.sandbox.serve import seed

FIXTURE = {
    "users": [{"name": "Ann Lee", "email": "ann@firm.example", "authorised": True},
              {"name": "Old Hand", "email": "old@firm.example", "enabled": False}],
    "custom_fields": [{"key": "optin", "name": "Sync to phone system", "parent_type": "Matter"}],
    "contacts": [{"key": "dana", "first": "Dana", "last": "Whitfield", "phones": ["(212) 555-0142"]},
                 {"key": "sam", "first": "Sam", "last": "Ortiz", "phones": ["+1 646 555 0111"]}],
    "matters": [{"client": "dana", "description": "Lease dispute", "related": {"sam": "Guarantor"},
                 "custom_fields": {"optin": "true"}}],
}


def test_a_fixture_seeds_users_custom_fields_contacts_and_matters() -> None:
    state = SandboxState()
    ids = seed(state, FIXTURE)
    matter = state.matters[ids["Lease dispute"]]
    assert state.authorised_user == ids["ann@firm.example"]
    assert state.users[ids["old@firm.example"]]["enabled"] is False
    assert matter["client"]["id"] == ids["dana"] and matter["custom_field_values"][0]["value"] == "true"
    assert [r["contact"]["id"] for r in state.relationships.values()] == [ids["sam"]]


def test_without_users_a_default_one_can_authorise() -> None:
    state = SandboxState()
    seed(state, {})
    assert state.authorised_user is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sandbox(fixture: Path) -> tuple[subprocess.Popen[str], int]:
    """`callbridge sandbox clio` on two free ports (API and storage), seeded; ready to use.

    Another test may take a port between our check and the sandbox's bind: then it is
    started again on others."""
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "callbridge", "sandbox", "clio", "--port", str(port),
             "--fixture", str(fixture), "--token", "cli-token", "--contact",
             "Lee Park: 212.555.0150"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(4)]  # printed once seeded
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            try:  # ready when both ports answer
                with socket.create_connection(("127.0.0.1", port), 0.2), \
                        socket.create_connection(("127.0.0.1", port + 1), 0.2):
                    assert banner[1].startswith(
                        f"client id {CLIENT_ID}, client secret {CLIENT_SECRET}"), banner
                    return proc, port
            except OSError:
                continue
        output = "".join(banner) + (proc.stdout.read() if proc.poll() is not None else "")
        proc.kill()
        proc.wait(timeout=10)
        if "address already in use" not in output.lower():
            raise RuntimeError(output or "the sandbox did not answer")
    raise RuntimeError("no two free ports found for the sandbox")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`callbridge sandbox clio` in a process of its own, seeded from a fixture file."""
    fixture = tmp_path / "firm.json"
    fixture.write_text(json.dumps(FIXTURE))
    proc, port = start_sandbox(fixture)
    try:
        yield f"http://127.0.0.1:{port}", "cli-token"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_the_served_sandbox_is_usable_on_its_own(served: tuple[str, str]) -> None:
    url, token = served
    with httpx2.Client(base_url=url) as http:
        # A token without a browser: authorize answers a redirect with a code at once.
        back = "http://127.0.0.1/callback"
        r = http.get("/oauth/authorize", params={"response_type": "code", "client_id": CLIENT_ID,
                                                 "redirect_uri": back, "state": "s"})
        code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
        issued = http.post("/oauth/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": back,
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).json()
        assert issued["access_token"]
        api = {"Authorization": f"Bearer {token}"}
        contacts = http.get("/api/v4/contacts.json", headers=api, params={
            "fields": "id,name", "limit": 1, "order": "id(asc)"}).json()
        # Its own host in every URL it hands out: the paging link, the upload URL.
        assert contacts["meta"]["paging"]["next"].startswith(f"{url}/api/v4/contacts.json?")
        names = [c["name"] for c in http.get("/api/v4/contacts.json", headers=api, params={
            "fields": "name", "order": "id(asc)"}).json()["data"]]
        assert names == ["Dana Whitfield", "Sam Ortiz", "Lee Park"]
        doc = http.post("/api/v4/documents.json", headers=api, params={
            "fields": "id,latest_document_version{put_url,put_headers}"}, json={"data": {
                "name": "fax.pdf", "parent": {"id": contacts["data"][0]["id"], "type": "Contact"}}})
        put_url = doc.json()["data"]["latest_document_version"]["put_url"]
        assert urlsplit(put_url).netloc == f"127.0.0.1:{urlsplit(url).port + 1}"
        headers = {h["name"]: h["value"]
                   for h in doc.json()["data"]["latest_document_version"]["put_headers"]}
        assert http.put(put_url, content=b"%PDF", headers=headers).status_code == 200
