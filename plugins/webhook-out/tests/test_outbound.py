"""The webhook goes only where the outbound address policy lets it: https, never a
loopback, private or metadata address. The loopback receiver of a test is reached
only after the test registers it (the test-only policy; no setting opens it)."""

from __future__ import annotations

from typing import Any

import callbridge_webhook_out
import pytest
from callbridge.context import MemoryStore
from callbridge.errors import AppError, CallbridgeError, ConfigError
from callbridge.facade import Facade
from callbridge.faults import serve_in_thread
from callbridge.plugins import Registry
from callbridge.testing import make_context
from callbridge.testing.addresses import allow_sandbox
from callbridge.testing.scenarios import SAMPLE_CLOSED_MATTER as MATTER
from callbridge.testing.services import KitDelivery, memory_locks
from callbridge_webhook_out.sandbox import PATH, ReceiverState, create_app

SECRET = "kit-webhook-secret"


async def send(url: str) -> Any:
    registry = Registry()
    registry.add(callbridge_webhook_out, entry_point="webhook_out")
    ctx = make_context(callbridge_webhook_out, tenant_id="acme",
                       settings={"url": url, "secret_env": "KIT_WEBHOOK_SECRET"},
                       delivery=KitDelivery(marker="cbm-test", first_attempt_at=_now()),
                       store=MemoryStore(), lock=memory_locks())
    try:
        hooks = Facade(registry).for_plugin("webhook_out")
        return await hooks.send_closed_matter(ctx, client=MATTER.client, matter=MATTER)
    finally:
        await ctx.http.aclose()
        await ctx.bare_http.aclose()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_a_registered_loopback_receiver_gets_the_signed_webhook() -> None:
    state = ReceiverState(secret=SECRET)
    with serve_in_thread(create_app(state)) as base, allow_sandbox(base):
        record = await send(f"{base}{PATH}")
    assert record.kind == "webhook" and record.id == "cbm-test"
    assert list(state.received) == ["cbm-test"] and state.refused == 0


async def test_an_unregistered_loopback_receiver_is_refused_before_any_request() -> None:
    state = ReceiverState(secret=SECRET)
    with serve_in_thread(create_app(state)) as base:
        with pytest.raises(ConfigError, match="only https"):
            await send(f"{base}{PATH}")
        https = base.replace("http://", "https://")
        with pytest.raises(AppError):
            await send(f"{https}{PATH}")
    assert state.requests == 0


@pytest.mark.parametrize("url", [
    "https://169.254.169.254/latest/meta-data", "https://10.0.0.5/hook",
    "https://[::1]/hook", "https://metadata.google.internal/hook"])
async def test_private_loopback_and_metadata_addresses_are_never_reached(url: str) -> None:
    with pytest.raises(CallbridgeError) as info:
        await send(url)
    assert "address" in str(info.value) or "metadata" in str(info.value)
