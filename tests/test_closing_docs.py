"""The closed-matter pages state what the code does: the receiver example runs and
checks signatures, the published schema is the body's, the example body reads."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from callbridge.testing.scenarios import SAMPLE_CLOSED_MATTER as MATTER
from callbridge_webhook_out.payload import (
    ClosedMatterWebhook,
    body,
    json_schema,
    payload,
    signature,
)

DOCS = Path(__file__).parents[1] / "docs"
SECRET = "docs-example-secret"


def code_block(page: str, language: str) -> str:
    (block,) = re.findall(rf"```{language}\n(.*?)```", (DOCS / page).read_text(), re.S)[:1]
    return str(block)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, Any], list[Any]]]:
    monkeypatch.setenv("CALLBRIDGE_WEBHOOK_SECRET", SECRET)
    namespace: dict[str, Any] = {"__name__": "receiver_example"}
    exec(compile(code_block("closed-matters-receiver.md", "python"), "receiver", "exec"),
         namespace)
    handled: list[Any] = []
    namespace["handle"] = handled.append
    server = namespace["ThreadingHTTPServer"](("127.0.0.1", 0), namespace["Receiver"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", namespace, handled
    finally:
        server.shutdown()
        server.server_close()


def signed(raw: bytes, *, at: float | None = None, secret: str = SECRET,
           key: str = "cbm-1") -> dict[str, str]:
    return {"Content-Type": "application/json", "Idempotency-Key": key,
            "Callbridge-Signature": signature(secret, int(at or time.time()), raw)}


def sample() -> bytes:
    return body(payload(idempotency_id="cbm-1", created_at=datetime.now(UTC), tenant="acme",
                        source="clio", client=MATTER.client, matter=MATTER))


def test_the_receiver_example_accepts_a_signed_webhook_once_and_refuses_the_rest(
        receiver: tuple[str, dict[str, Any], list[Any]]) -> None:
    url, _, handled = receiver
    raw = sample()
    with httpx2.Client(timeout=5) as client:
        assert client.post(url, content=raw, headers=signed(raw)).json() == {"id": "cbm-1"}
        assert client.post(url, content=raw, headers=signed(raw)).status_code == 200  # repeat
        tampered = raw.replace(b"Dana", b"Dina")
        assert client.post(url, content=tampered, headers=signed(raw)).status_code == 400
        old = signed(raw, at=time.time() - 600)
        assert client.post(url, content=raw, headers=old).status_code == 400
        wrong = signed(raw, secret="not-the-secret")
        assert client.post(url, content=raw, headers=wrong).status_code == 400
        assert client.post(url, content=raw, headers={}).status_code == 400
    assert [m["matter"]["id"] for m in handled] == ["kit-matter-1"]


def test_the_published_schema_is_the_bodys() -> None:
    published = json.loads((DOCS / "closed-matter-webhook.schema.json").read_text())
    assert published == json_schema(), "regenerate docs/closed-matter-webhook.schema.json"


def test_the_example_body_on_the_page_reads_as_the_schema() -> None:
    example = json.loads(code_block("closed-matters.md", "json"))
    assert ClosedMatterWebhook.model_validate(example).schema_ == "callbridge.closed_matter.v1"
