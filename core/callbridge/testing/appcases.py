"""The contract kit's standard cases for app events (hook API 2.1, ``app_events``).

Mixed into :class:`callbridge.testing.suite.ContractSuite`. Subscribing and
renewing go to the app (recorded like every other case); verifying and parsing
read only the request, which the plugin's own :class:`AppEventSamples` builds,
so their cases record nothing and fail on any request sent.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from callbridge.capabilities import Capability
from callbridge.errors import AppEventRefused
from callbridge.models import (
    AppRequest,
    AppSubscription,
    MatterChanged,
    WriteConfirmed,
    WriteFailed,
)
from callbridge.testing.kit import Kit, covers
from callbridge.testing.scenarios import KIT_CALLBACK, KIT_START, AppEventSamples

#: The subscription the verify and parse cases sign with, and one that is not it.
KIT_SUBSCRIPTION = AppSubscription(id="kit-subscription", secret="kit-app-events-secret")
OTHER_SUBSCRIPTION = AppSubscription(id="kit-subscription", secret="not-the-kit-secret")
#: The marker of the write the sample requests report on, and the matter that changed.
KIT_MARKER = "cb2-0123456789abcdef0123456789abcdef"
KIT_MATTER = "kit-matter-1"


class AppEventCases:
    """Subscribing, renewing, verifying and parsing the app's requests."""

    kit: ClassVar[Kit]

    def _samples(self, case: str, hook: str) -> AppEventSamples:
        self.kit.require(case, hook, Capability.APP_EVENTS, since="2.1")
        samples = self.kit.scenarios.app_events
        if samples is None:
            pytest.fail("Scenarios.app_events is needed: the plugin declares app_events; give "
                        "AppEventSamples(write_done=..., kind=...) or AppEventSamples("
                        "matter_changed=...) that build your app's requests", pytrace=False)
        return samples

    @staticmethod
    def _first(samples: AppEventSamples) -> AppRequest:
        """The first request the samples build, signed with the kit's subscription."""
        if samples.write_done is not None:
            return samples.write_done(KIT_SUBSCRIPTION, KIT_MARKER, KIT_START)
        if samples.write_failed is not None:
            return samples.write_failed(KIT_SUBSCRIPTION, KIT_MARKER, KIT_START)
        assert samples.matter_changed is not None
        return samples.matter_changed(KIT_SUBSCRIPTION, KIT_MATTER, KIT_START)

    @covers("subscribe_app_events")
    def test_subscribe_app_events(self) -> None:
        self.kit.require("subscribe_app_events", "subscribe_app_events",
                         Capability.APP_EVENTS, since="2.1")
        sub = self.kit.run("subscribe_app_events",
                           lambda h, ctx: h.subscribe_app_events(ctx, url=KIT_CALLBACK))
        assert sub.id, "the subscription has no id"
        assert sub.secret, ("the subscription has no secret: return the key the app signs "
                            "with (yours, or the one the app gave)")
        assert sub.expires_at is None or sub.expires_at > KIT_START, (
            "the subscription expires before it was made")

    @covers("renew_app_events")
    def test_renew_app_events(self) -> None:
        self.kit.require("renew_app_events", "renew_app_events", Capability.APP_EVENTS,
                         since="2.1")

        async def body() -> tuple[AppSubscription, AppSubscription]:
            async with self.kit.session("renew_app_events") as s:
                first = await s.hooks.subscribe_app_events(s.context(), url=KIT_CALLBACK)
                again = await s.hooks.renew_app_events(s.context(), subscription=first,
                                                       url=KIT_CALLBACK)
                return first, again

        first, again = asyncio.run(body())
        assert again.id and again.secret, "the renewed subscription lacks its id or secret"
        if first.expires_at is not None and again.id == first.id:
            assert again.expires_at is not None and again.expires_at >= first.expires_at, (
                "renewing moved the expiry earlier")

    def _offline(self, case: str, call: Any) -> Any:
        """Run ``call(hooks, ctx)`` in a session that records nothing: no request may be sent."""
        async def body() -> Any:
            async with self.kit.session(case) as s:
                return await call(s.hooks, s.context())

        return asyncio.run(body())

    @covers("verify_app_event")
    def test_verify_app_event_accepts_the_apps_request_and_refuses_another_key(self) -> None:
        samples = self._samples("verify_app_event", "verify_app_event")
        request = self._first(samples)
        self._offline("verify_app_event", lambda h, ctx: h.verify_app_event(
            ctx, request=request, subscription=KIT_SUBSCRIPTION))
        with pytest.raises(AppEventRefused) as refused:
            self._offline("verify_app_event", lambda h, ctx: h.verify_app_event(
                ctx, request=request, subscription=OTHER_SUBSCRIPTION))
        assert refused.value.problem, "the refusal must say what is wrong"
        assert str(KIT_SUBSCRIPTION.secret) not in str(refused.value)

    @covers("parse_app_event")
    def test_parse_app_event_reads_the_apps_requests_into_work(self) -> None:
        samples = self._samples("parse_app_event", "parse_app_event")

        def parsed(request: AppRequest) -> list[object]:
            work: list[object] = self._offline("parse_app_event", lambda h, ctx: h.parse_app_event(
                ctx, request=request, subscription=KIT_SUBSCRIPTION))
            return work

        if samples.write_done is not None:
            work = parsed(samples.write_done(KIT_SUBSCRIPTION, KIT_MARKER, KIT_START))
            assert any(isinstance(w, WriteConfirmed) and w.marker == KIT_MARKER
                       and w.kind == samples.kind for w in work), (
                f"parse_app_event found no WriteConfirmed(marker=<the marker>, kind="
                f"{samples.kind!r}) in the write_done sample; it returned {work!r}")
        if samples.write_failed is not None:
            work = parsed(samples.write_failed(KIT_SUBSCRIPTION, KIT_MARKER, KIT_START))
            found = [w for w in work if isinstance(w, WriteFailed) and w.marker == KIT_MARKER]
            assert found and found[0].kind == samples.kind, (
                f"parse_app_event found no WriteFailed for the write_failed sample: {work!r}")
            assert found[0].reason, "a WriteFailed needs a reason for people"
        if samples.matter_changed is not None:
            work = parsed(samples.matter_changed(KIT_SUBSCRIPTION, KIT_MATTER, KIT_START))
            assert any(isinstance(w, MatterChanged) and w.matter_id == KIT_MATTER
                       for w in work), (
                f"parse_app_event found no MatterChanged(matter_id={KIT_MATTER!r}) in the "
                f"matter_changed sample; it returned {work!r}")
