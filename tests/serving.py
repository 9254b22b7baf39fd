"""Helpers for the server's tests: signed requests and `callbridge serve` as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from callbridge.sources.native import sign

#: The sources of tenant acme in the tests' settings (keys from these variables).
SOURCES = """
[tenants.acme.sources.pbx]
secret_env = "TEST_PBX_KEY"
previous_secret_env = "TEST_PBX_OLD_KEY"
"""
KEY = "pbx-key-for-tests-only"
OLD_KEY = "pbx-old-key-for-tests-only"


def signed(body: bytes | dict[str, Any] | list[Any], key: str = KEY, *,
           at: float | None = None) -> tuple[bytes, dict[str, str]]:
    """The body (JSON text of a dict or list) and the headers of a request signed now."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = int(time.time() if at is None else at)
    return raw, {"Callbridge-Signature": sign(raw, key, stamp),
                 "Content-Type": "application/json"}


def start_server(config: Path, *args: str,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """``callbridge serve`` on loopback, port 0; returns the process and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "callbridge", "serve", "--config", str(config), "--port", "0",
         *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first.startswith("callbridge serving on "):
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"serve did not start: {first!r} {err[-2000:]}")
    return proc, first.split()[3]
