"""Many due deliveries of one portal written together: ``log_batch``.

Calls go to ``/crm/v3/objects/calls/batch/create`` and SMS to the communications'
batch endpoint, up to 100 inputs a request, each input tagged with its
``objectWriteTraceId`` so HubSpot's answer says which input each result or error
belongs to. Every item still goes through the host's write protocol
(``ctx.delivery.step``): a record kept by an earlier attempt is not written again,
and after an uncertain write the record is looked up by its marker before anything
is sent; those look-ups, too, go out as one search for the whole batch.

A bad item fails alone:

* HubSpot answers 207 with per-item errors: the errors' items fail, the rest are logged;
* HubSpot refuses the whole request with a 400: the inputs the answer names are
  dropped (failed) and the rest sent again; a 400 that names none is split in
  halves until the bad input stands alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from callbridge import hookspecs, models
from callbridge.context import HookContext
from callbridge.errors import AppError, PermanentError, TransientError
from callbridge.events import CallEvent, FaxEvent, SmsEvent
from callbridge.models import LogResult, LogTarget, Record
from callbridge.redact import redact

from callbridge_hubspot import content, host
from callbridge_hubspot.api import BATCH_MAX, BatchAnswer, BatchError, HubSpotApi

#: Whether the host calls ``log_batch`` (hook API 2.0).
HOST_HAS_BATCH = hasattr(hookspecs, "log_batch")


@dataclass(frozen=True)
class _BatchItem:
    event: CallEvent | SmsEvent | FaxEvent
    target: LogTarget
    delivery: Any


@dataclass(frozen=True)
class _BatchResult:
    ok: LogResult | None = None
    error: AppError | None = None


BatchItem: Any = getattr(models, "BatchItem", _BatchItem)
BatchResult: Any = getattr(models, "BatchResult", _BatchResult)

OBJECT_TYPE = {"call": "calls", "sms": "communications"}


class _Gather:
    """Collects the items' ``find()`` and ``create()`` calls and sends each kind together.

    The finds go out once every item still running waits in a find or a create; the
    creates once every item still running waits in a create.
    """

    def __init__(self, count: int,
                 finds: Callable[[dict[int, asyncio.Future[str | None]]], Awaitable[None]],
                 creates: Callable[[dict[int, asyncio.Future[str]]], Awaitable[None]]) -> None:
        self.active = count
        self.finding: dict[int, asyncio.Future[str | None]] = {}
        self.creating: dict[int, asyncio.Future[str]] = {}
        self._finds = finds
        self._creates = creates
        self._tasks: set[asyncio.Task[None]] = set()

    def _start(self, job: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _next(self) -> None:
        waiting = len(self.finding) + len(self.creating)
        if self.finding and waiting == self.active:
            batch, self.finding = self.finding, {}
            self._start(self._settle(self._finds, batch))
        elif self.creating and len(self.creating) == self.active:
            batch2, self.creating = self.creating, {}
            self._start(self._settle(self._creates, batch2))

    @staticmethod
    async def _settle(send: Callable[[dict[int, Any]], Awaitable[None]],
                      batch: dict[int, asyncio.Future[Any]]) -> None:
        try:
            await send(batch)
        except BaseException as exc:
            for fut in batch.values():
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    async def find(self, i: int) -> str | None:
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.finding[i] = fut
        self._next()
        return await fut

    async def create(self, i: int) -> str:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.creating[i] = fut
        self._next()
        return await fut

    def done(self) -> None:
        self.active -= 1
        self._next()


def _refusal(error: BatchError) -> PermanentError:
    detail = "; ".join(
        f"{d.get('code') or 'invalid'} {','.join((d.get('context') or {}).get('propertyName', []))}"
        .strip() for d in error.errors) or redact(error.message)[:200]
    return PermanentError(f"HubSpot refused the record ({error.category or 'error'}: {detail})")


class _Writer:
    """Sends the creates of one batch, 100 inputs a request, dropping what HubSpot refuses."""

    def __init__(self, api: HubSpotApi, object_type: str,
                 build: Callable[[int], dict[str, Any]]) -> None:
        self.api = api
        self.object_type = object_type
        self.build = build

    async def send(self, batch: dict[int, asyncio.Future[str]]) -> None:
        order = sorted(batch)
        for start in range(0, len(order), BATCH_MAX):
            await self._chunk(order[start:start + BATCH_MAX], batch)

    async def _chunk(self, indexes: list[int], futures: dict[int, asyncio.Future[str]]) -> None:
        pending = list(indexes)
        while pending:
            inputs = [{**self.build(i), "objectWriteTraceId": str(i)} for i in pending]
            try:
                status, answer = await self.api.batch_create(self.object_type, inputs)
            except AppError as exc:
                for i in pending:
                    futures[i].set_exception(exc)
                return
            if status == 400:
                error = BatchError.model_validate(answer)
                named = {int(t) for t in error.trace_ids() if t.isdigit()} & set(pending)
                if not named:
                    if len(pending) == 1:
                        futures[pending[0]].set_exception(_refusal(error))
                        return
                    half = len(pending) // 2
                    await self._chunk(pending[:half], futures)
                    await self._chunk(pending[half:], futures)
                    return
                for i in named:
                    futures[i].set_exception(_refusal(error))
                pending = [i for i in pending if i not in named]
                continue
            self._answered(pending, BatchAnswer.model_validate(answer), futures)
            return

    @staticmethod
    def _answered(pending: list[int], answer: BatchAnswer,
                  futures: dict[int, asyncio.Future[str]]) -> None:
        for obj in answer.results:
            trace = obj.object_write_trace_id
            if trace is not None and trace.isdigit() and int(trace) in futures:
                fut = futures[int(trace)]
                if not fut.done():
                    fut.set_result(obj.id)
        for error in answer.errors:
            for trace in error.trace_ids():
                fut2 = futures.get(int(trace)) if trace.isdigit() else None
                if fut2 is not None and not fut2.done():
                    fut2.set_exception(_refusal(error))
        for i in pending:
            if not futures[i].done():
                # Neither a result nor an error: it may be written. The retry looks first.
                futures[i].set_exception(TransientError(
                    "HubSpot's batch answer said nothing of this record; it is looked up "
                    "before any retry writes it"))


async def log_batch(ctx: HookContext, kind: str, items: list[Any]) -> list[Any]:
    """Write ``items`` (deliveries of one portal, one event kind) with batch requests.

    Returns one result per item, in order: ``BatchResult(ok=LogResult)`` or
    ``BatchResult(error=AppError)``.
    """
    import callbridge_hubspot as plugin

    if kind not in OBJECT_TYPE:  # faxes: a file and a note each, one by one
        return [await _one_by_one(ctx, item) for item in items]
    object_type = OBJECT_TYPE[kind]
    api = await plugin.api_for(ctx)
    prop = await plugin.marker_property(ctx, api, object_type)
    record_kind = plugin.OBJECT_KIND[object_type]

    def build(i: int) -> dict[str, Any]:
        item = items[i]
        marker = (prop, host.marker(item.delivery, item.event)) if prop else None
        props = (content.call_properties(item.event, item.target, marker) if kind == "call"
                 else content.sms_properties(item.event, item.target, marker))
        return {"properties": props,
                "associations": content.associations(item.target,
                                                     content.TYPE_TO_CONTACT[object_type])}

    writer = _Writer(api, object_type, build)

    async def finds(batch: dict[int, asyncio.Future[str | None]]) -> None:
        for i in batch:
            await plugin.settle(replace(ctx, delivery=items[i].delivery),
                                f"{record_kind}:{host.marker(items[i].delivery, items[i].event)}")
        markers = [host.marker(items[i].delivery, items[i].event) for i in batch]
        found = await plugin.find_marked(api, object_type, prop, markers)
        for i, fut in batch.items():
            if not fut.done():
                fut.set_result(found.get(host.marker(items[i].delivery, items[i].event)))

    gather = _Gather(len(items), finds, writer.send)

    async def one(i: int) -> Any:
        item = items[i]
        item_ctx = replace(ctx, delivery=item.delivery)
        key = f"{record_kind}:{host.marker(item.delivery, item.event)}"

        async def create() -> str:
            await plugin.begin(item_ctx, key)
            return await gather.create(i)

        try:
            record: Record = await host.step(item.delivery, record_kind, "log", create=create,
                                             find=lambda: gather.find(i))
            await plugin.written(item_ctx, key)
            return BatchResult(ok=LogResult(records=(record,)), error=None)
        except AppError as exc:
            return BatchResult(ok=None, error=exc)
        except Exception as exc:  # one item's trouble is that item's outcome
            return BatchResult(ok=None, error=TransientError(
                f"logging this item failed ({type(exc).__name__})"))
        finally:
            gather.done()

    return list(await asyncio.gather(*(one(i) for i in range(len(items)))))


async def _one_by_one(ctx: HookContext, item: Any) -> Any:
    import callbridge_hubspot as plugin

    try:
        result = await plugin.log_fax(replace(ctx, delivery=item.delivery), item.event, item.target)
        return BatchResult(ok=result, error=None)
    except AppError as exc:
        return BatchResult(ok=None, error=exc)
