"""`callbridge auth clio` and `callbridge check`, run as a user runs them, against the
Clio sandbox on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx2
from callbridge.ledger import Ledger

from plugins.clio.tests.conftest import write_config

REDIRECT = "https://firm.example/callback"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callbridge", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_auth_prints_the_authorise_url_then_completes_from_the_redirect(
        tmp_path: Path, sandbox: Any, firm: dict[str, int]) -> None:
    key = Ledger.generate_key()
    config = write_config(tmp_path / "callbridge.toml", sandbox.url)
    env = {"CALLBRIDGE_SECRET_KEY": key, "CALLBRIDGE_CONFIG": str(config), "CALLBRIDGE_PLUGINS": "clio",
           "ACME_CLIO_CLIENT_ID": sandbox.state.client_id,
           "ACME_CLIO_CLIENT_SECRET": sandbox.state.client_secret}
    first = cli("auth", "clio", "--tenant", "acme", "--redirect-uri", REDIRECT, env=env)
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip()
    query = parse_qs(urlparse(url).query)
    assert url.startswith(f"{sandbox.url}/oauth/authorize?")
    assert query["redirect_on_decline"] == ["true"] and query["state"][0]
    # The user approves in the browser; the app sends the browser back with a code.
    back = httpx2.get(url, follow_redirects=False).headers["location"]
    forged = back.replace(query["state"][0], "forged-state")
    refused = cli("auth", "clio", "--tenant", "acme", "--redirect-uri", REDIRECT, "--redirect-url",
                  forged, env=env)
    assert refused.returncode != 0 and "state" in refused.stderr and "Traceback" not in refused.stderr
    done = cli("auth", "clio", "--tenant", "acme", "--redirect-uri", REDIRECT, "--redirect-url", back,
               env=env)
    assert done.returncode == 0, done.stderr
    token = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", secret_key=key).token_get("acme", "clio")
    assert token is not None and token["access_token"] in sandbox.state.tokens
    check = cli("check", "acme", "clio", env=env)
    assert check.returncode == 0 and "ok" in check.stdout


def test_check_reports_a_failed_authentication(tmp_path: Path, sandbox: Any, firm: dict[str, int]) -> None:
    key = Ledger.generate_key()
    config = write_config(tmp_path / "callbridge.toml", sandbox.url)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", secret_key=key)
    ledger.migrate()
    ledger.token_set("acme", "clio", {"access_token": "revoked-token-0123456789",
                                      "refresh_token": "revoked-refresh-0123456789"})
    env = {"CALLBRIDGE_SECRET_KEY": key, "CALLBRIDGE_CONFIG": str(config), "CALLBRIDGE_PLUGINS": "clio",
           "ACME_CLIO_CLIENT_ID": sandbox.state.client_id,
           "ACME_CLIO_CLIENT_SECRET": sandbox.state.client_secret}
    result = cli("check", "acme", "clio", env=env)
    assert result.returncode == 1
    assert "authentication_failed" in result.stderr and "revoked-token" not in result.stderr


def test_the_sandbox_command_serves_clio_on_loopback() -> None:
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "callbridge", "sandbox", "clio", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx2.get(f"http://127.0.0.1:{port}/api/v4/users.json?fields=id")
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline, "the sandbox did not start"
                time.sleep(0.2)
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
