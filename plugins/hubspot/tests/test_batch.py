"""``log_batch``: many calls of one portal through the batch create endpoint.

Called directly with one delivery per item, as the host's worker does (hook API 2.0).
"""

from __future__ import annotations

from typing import Any

import pytest
from callbridge.errors import PermanentError, TransientError
from callbridge.models import Contact, LogTarget
from callbridge_hubspot import api_for as hubspot_api
from callbridge_hubspot import batch, marker_property
from callbridge_hubspot.portal import Portal

from plugins.hubspot.tests.conftest import Delivery, api_requests
from plugins.hubspot.tests.test_hooks import DANA, call

GHOST = Contact(id="999999", name="Deleted Contact")  # HubSpot refuses an association to it


def items(n: int, *, bad: set[int] = frozenset()) -> list[Any]:  # type: ignore[assignment]
    out = []
    for i in range(n):
        target = LogTarget(contacts=(GHOST if i in bad else DANA,))
        out.append(batch.BatchItem(event=call(id=f"b-{i}"), target=target,
                                   delivery=Delivery(marker=f"cb1-b{i}")))
    return out


def batch_posts(portal: Portal) -> list[dict[str, Any]]:
    return api_requests(portal, "POST", "/crm/v3/objects/calls/batch/create")


async def test_a_batch_logs_each_call_once_with_one_request(hook_ctx: Any, portal: Portal) -> None:
    work = items(5)
    results = await batch.log_batch(hook_ctx, "call", work)
    assert all(r.error is None for r in results)
    ids = [r.ok.records[0].id for r in results]
    assert sorted(ids) == sorted(portal.objects["calls"])
    assert [portal.objects["calls"][i]["properties"]["callbridge_event"] for i in ids] == [
        item.delivery.marker for item in work]
    assert len(batch_posts(portal)) == 1
    assert all(item.delivery.records == r.ok.records for item, r in zip(work, results, strict=True))


async def test_more_than_a_hundred_calls_go_in_requests_of_a_hundred(hook_ctx: Any,
                                                                     portal: Portal) -> None:
    results = await batch.log_batch(hook_ctx, "call", items(250))
    assert all(r.ok for r in results) and len(portal.objects["calls"]) == 250
    assert [len(p["json"]["inputs"]) for p in batch_posts(portal)] == [100, 100, 50]


async def test_a_bad_item_fails_alone_when_hubspot_answers_207(hook_ctx: Any, portal: Portal) -> None:
    results = await batch.log_batch(hook_ctx, "call", items(4, bad={2}))
    assert [r.error is None for r in results] == [True, True, False, True]
    assert isinstance(results[2].error, PermanentError)
    assert len(portal.objects["calls"]) == 3 and len(batch_posts(portal)) == 1


async def test_a_bad_item_is_dropped_and_the_rest_resent_when_hubspot_answers_400(
        hook_ctx: Any, portal: Portal) -> None:
    portal.batch_errors = "400"
    results = await batch.log_batch(hook_ctx, "call", items(4, bad={1, 3}))
    assert [r.error is None for r in results] == [True, False, True, False]
    assert all(isinstance(r.error, PermanentError) for r in (results[1], results[3]))
    assert len(portal.objects["calls"]) == 2
    assert [len(p["json"]["inputs"]) for p in batch_posts(portal)] == [4, 3, 2]


async def test_a_lost_batch_answer_is_found_by_one_search_before_anything_is_resent(
        hook_ctx: Any, portal: Portal, hub: Any, clock: Any) -> None:
    portal.search_delay = 4.0
    await marker_property(hook_ctx, await hubspot_api(hook_ctx), "calls")
    work = items(3)
    hub.fail_on[("POST", "/crm/v3/objects/calls/batch/create")] = ["drop_after"]
    first = await batch.log_batch(hook_ctx, "call", work)
    assert all(isinstance(r.error, TransientError) for r in first)
    assert len(portal.objects["calls"]) == 3  # written, though nobody heard
    for item in work:
        item.delivery.retry()
    again = await batch.log_batch(hook_ctx, "call", work)
    assert all(r.ok for r in again) and len(portal.objects["calls"]) == 3
    assert sorted(r.ok.records[0].id for r in again) == sorted(portal.objects["calls"])
    assert len(api_requests(portal, "POST", "/crm/v3/objects/calls/search")) == 1
    assert len(batch_posts(portal)) == 1


async def test_items_already_logged_cost_nothing(hook_ctx: Any, portal: Portal) -> None:
    work = items(3)
    await batch.log_batch(hook_ctx, "call", work)
    sent = len(portal.requests)
    again = await batch.log_batch(hook_ctx, "call", work)
    assert all(r.ok for r in again) and len(portal.requests) == sent


async def test_sms_go_through_the_communications_batch(hook_ctx: Any, portal: Portal) -> None:
    from callbridge.events import parse_event

    work = [batch.BatchItem(event=parse_event({
        "kind": "sms", "id": f"s{i}", "tenant": "acme", "direction": "inbound",
        "external": {"number": "+12125550142"}, "sent_at": "2026-03-02T16:30:00Z",
        "body": f"Message {i}"}, region="US"), target=LogTarget(contacts=(DANA,)),
        delivery=Delivery(marker=f"cb1-s{i}")) for i in range(3)]
    results = await batch.log_batch(hook_ctx, "sms", work)
    assert all(r.ok for r in results) and len(portal.objects["communications"]) == 3
    assert len(api_requests(portal, "POST", "/crm/v3/objects/communications/batch/create")) == 1


@pytest.mark.parametrize("kind", ["call"])
async def test_a_rate_limited_batch_fails_every_item_for_a_retry(hook_ctx: Any, hub: Any,
                                                                 kind: str) -> None:
    await marker_property(hook_ctx, await hubspot_api(hook_ctx), "calls")
    hub.app.state.sandbox.limits.burst = 0
    results = await batch.log_batch(hook_ctx, kind, items(3))
    assert all(r.error is not None and r.error.retryable for r in results)


async def test_the_host_reaches_log_batch_through_its_facade(hook_ctx: Any, portal: Portal) -> None:
    import callbridge_hubspot
    from callbridge.facade import Facade
    from callbridge.plugins import Registry

    registry = Registry()
    registry.add(callbridge_hubspot, entry_point="hubspot", distribution="callbridge-hubspot",
                 dist_version="0")
    hooks = Facade(registry).for_plugin("hubspot")
    results = await hooks.log_batch(hook_ctx, kind="call", items=items(3, bad={1}))
    assert [r.error is None for r in results] == [True, False, True]
    assert len(batch_posts(portal)) == 1


async def test_a_hundred_lost_answers_are_looked_for_within_the_search_limits(
        hook_ctx: Any, portal: Portal, hub: Any) -> None:
    await marker_property(hook_ctx, await hubspot_api(hook_ctx), "calls")
    work = items(100)
    hub.fail_on[("POST", "/crm/v3/objects/calls/batch/create")] = ["drop_after"]
    await batch.log_batch(hook_ctx, "call", work)
    for item in work:
        item.delivery.retry()
    again = await batch.log_batch(hook_ctx, "call", work)
    assert all(r.ok for r in again) and len(portal.objects["calls"]) == 100
    searches = api_requests(portal, "POST", "/crm/v3/objects/calls/search")
    assert 1 < len(searches) <= 3  # the markers in a few bodies under 3,000 characters each
    assert len(batch_posts(portal)) == 1
