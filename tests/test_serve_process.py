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
