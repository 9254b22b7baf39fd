"""`callbridge serve` as a real process: it prints where it listens (port 0: a free one),
answers, and stops on SIGTERM with exit code 0 after finishing its work."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from tests.conftest import Notebook, write_config
from tests.serving import start_server


@pytest.mark.slow
def test_serve_listens_on_a_free_port_answers_and_stops_on_sigterm(
        tmp_path: Path, notebook: Notebook, secret_key: str) -> None:
    config = write_config(tmp_path / "callbridge.toml", notebook.url)
    proc, url = start_server(config)
    try:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        assert httpx2.get(f"{url}/healthz").json() == {"status": "ok"}
        assert httpx2.get(f"{url}/readyz").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_bad_settings_with_exit_code_2(tmp_path: Path, secret_key: str) -> None:
    config = tmp_path / "callbridge.toml"
    config.write_text("[serve]\nport = 70000\n")
    out = subprocess.run([sys.executable, "-m", "callbridge", "serve", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "serve.port" in out.stderr


@pytest.mark.slow
def test_sigterm_mid_work_leaves_no_delivery_leased(
        tmp_path: Path, notebook: Notebook, secret_key: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import sqlalchemy as sa
    from callbridge.ledger import Ledger

    from tests.serving import KEY, SOURCES, signed

    monkeypatch.setenv("TEST_PBX_KEY", KEY)
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "notebook")
    notebook.state.delay_ms = (300, 400)  # a slow app: the stop finds deliveries mid-call
    # No grace: deliveries still being worked at the stop are stopped and their leases given back.
    config = write_config(tmp_path / "callbridge.toml", notebook.url,
                          extra=SOURCES + "\n[serve]\nshutdown_grace_seconds = 0\n")
    proc, url = start_server(config)
    try:
        with httpx2.Client(base_url=url) as client:
            for i in range(20):
                raw, headers = signed({
                    "kind": "sms", "id": f"s-{i}", "direction": "inbound",
                    "external": {"number": "+1 212 555 0142"}, "body": "hello",
                    "sent_at": "2026-03-02T09:00:00+00:00"})
                assert client.post("/v1/sources/acme/pbx", content=raw,
                                   headers=headers).status_code == 200
        deadline = time.monotonic() + 30
        while not notebook.faults.requests:  # the worker has begun calling the app
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", secret_key=secret_key)
    with ledger.engine.connect() as conn:
        leased = conn.execute(sa.text(
            "SELECT count(*) FROM deliveries WHERE lease_owner IS NOT NULL")).scalar()
    assert leased == 0
    statuses = {v.status for v in ledger.history(limit=100)}
    assert statuses <= {"pending", "logged"} and "pending" in statuses
