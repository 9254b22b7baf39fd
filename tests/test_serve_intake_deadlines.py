"""The intake's read timeout: one deadline per request, watched by one task for the server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from callbridge.serve.intake import Deadlines, read_body
from callbridge.testing.clock import FakeClock


class Sender:
    """An ASGI ``receive`` whose body arrives in parts, each when the test says."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = list(parts)
        self.gate = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        if len(self.parts) > 1:
            part = self.parts.pop(0)
            return {"type": "http.request", "body": part, "more_body": True}
        await self.gate.wait()  # the last part: when the test lets it arrive
        return {"type": "http.request", "body": self.parts.pop(0), "more_body": False}


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def sleepers(clock: FakeClock) -> int:
    return sum(not fut.done() for _, _, fut in clock._sleepers)


async def test_a_body_arriving_in_parts_within_the_deadline_is_read_whole() -> None:
    clock = FakeClock()
    deadlines = Deadlines(clock)
    sender = Sender(b'{"kind": ', b'"call"}')
    reading = asyncio.create_task(read_body(sender.receive, 4096, deadlines, 30))
    await settle()
    assert sleepers(clock) == 1  # the body waits: one watcher sleeps until its deadline
    clock.advance(29)
    await settle()
    sender.gate.set()
    read = await reading
    assert read.data == b'{"kind": "call"}' and not read.late and not read.cut
    await settle()
    assert sleepers(clock) == 0  # no read open: the watcher stopped, nothing left asleep


async def test_a_body_already_there_costs_no_watcher() -> None:
    clock = FakeClock()
    deadlines = Deadlines(clock)
    sender = Sender(b"{}")
    sender.gate.set()
    reads = [await read_body(sender.receive, 4096, deadlines, 30)]
    await settle()
    assert reads[0].data == b"{}" and sleepers(clock) == 0


async def test_a_read_past_its_deadline_is_late_and_its_request_goes_on() -> None:
    clock = FakeClock()
    deadlines = Deadlines(clock)
    early, late = Sender(b"a", b"b"), Sender(b"c", b"d")

    async def request(sender: Sender, within: float) -> tuple[bool, bytes]:
        read = await read_body(sender.receive, 4096, deadlines, within)
        await asyncio.sleep(0)  # still running: not cancelled once answered as late
        return read.late, read.data

    fast = asyncio.create_task(request(early, 30))
    await settle()  # the watcher sleeps until 30 s from now...
    slow = asyncio.create_task(request(late, 10))  # ...until a shorter timeout applies
    await settle()
    clock.advance(10)
    await settle()
    assert slow.done() and not fast.done()
    assert await slow == (True, b"c")  # its beginning, kept for the quarantine
    early.gate.set()
    assert await fast == (False, b"ab")  # the other read kept its own deadline
    await settle()
    assert sleepers(clock) == 0


async def test_a_read_cancelled_for_another_reason_stays_cancelled() -> None:
    clock = FakeClock()
    reading = asyncio.create_task(read_body(Sender(b"a", b"b").receive, 4096,
                                            Deadlines(clock), 30))
    await settle()
    reading.cancel()  # e.g. the server stopping
    with pytest.raises(asyncio.CancelledError):
        await reading
    await settle()
    assert sleepers(clock) == 0
