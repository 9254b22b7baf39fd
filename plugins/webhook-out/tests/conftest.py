"""The webhook plugin's tests share one fictional secret, set per test."""

from __future__ import annotations

import pytest

#: The shared secret of every test (fictional; a receiver's real one lives in its vault).
SECRET = "kit-webhook-secret"
SECRET_ENV = "KIT_WEBHOOK_SECRET"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
