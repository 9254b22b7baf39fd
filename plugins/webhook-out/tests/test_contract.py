"""The webhook plugin's contract tests: the kit's standard suite (a destination: its
send case, its settings, its cassettes), recorded against the receiver in
``callbridge_webhook_out.sandbox``.

Re-record one case with ``CALLBRIDGE_RECORD_MODE=once python -m pytest
plugins/webhook-out/tests/test_contract.py -k <case>`` after deleting its file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import callbridge_webhook_out
import yaml
from callbridge.testing import Scenarios, contract_suite
from callbridge.testing.clock import FakeClock
from callbridge_webhook_out.payload import verify
from callbridge_webhook_out.sandbox import PATH, ReceiverState, create_app

CASSETTES = Path(__file__).parent / "cassettes"
SECRET = "kit-webhook-secret"  # as conftest.SECRET
SETTINGS = {"url": f"https://hooks.firm.example{PATH}", "secret_env": "KIT_WEBHOOK_SECRET"}


def receiver(clock: FakeClock) -> Any:
    return create_app(ReceiverState(secret=SECRET), clock=clock)


TestWebhookOut = contract_suite(
    plugin=callbridge_webhook_out, settings=SETTINGS, cassettes=CASSETTES, sandbox=receiver,
    scenarios=Scenarios(known_number="+12125550142", unknown_number="+12125550199"))


def test_the_recorded_send_is_signed_over_its_body_with_the_idempotency_id() -> None:
    cassette = yaml.safe_load((CASSETTES / "send_closed_matter.yaml").read_text())
    (exchange,) = cassette["interactions"]
    request = exchange["request"]
    headers = {k.lower(): v[0] for k, v in request["headers"].items()}
    raw = request["body"].encode()
    stamp = verify(SECRET, headers["callbridge-signature"], raw, now=1767625200)
    assert stamp == 1767625200  # the kit's clock: 2026-01-05 15:00 UTC
    body = yaml.safe_load(request["body"])
    assert body["schema"] == "callbridge.closed_matter.v1"
    assert headers["idempotency-key"] == body["id"] == "kit-closed-kit-matter-1-2026-01-05"
    assert exchange["response"]["status"]["code"] == 200
