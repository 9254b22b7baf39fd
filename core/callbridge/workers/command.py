"""``callbridge worker``: a process that logs deliveries, one of many sharing a ledger."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from callbridge.runtime import Runtime, config_path, load

log = logging.getLogger("callbridge.workers")


def main(config: Path | None, concurrency: int | None) -> None:
    """The command: exits with the worker's code, or 2 and a message for bad settings."""
    import typer

    from callbridge.commands import fail
    from callbridge.errors import ConfigError

    try:
        code = run(config, concurrency=concurrency)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    raise typer.Exit(code)


def run(config: Path | None, *, concurrency: int | None = None) -> int:
    """Work until SIGTERM or SIGINT; the exit code. Raises ConfigError for bad settings."""
    return asyncio.run(_work(load(config_path(config)), concurrency))


async def _work(rt: Runtime, concurrency: int | None) -> int:
    from callbridge.workers import scheduler_for, uses_queue

    engine = rt.engine()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    kind = "the task queue" if uses_queue(engine) else "the ledger, polled"
    scheduler = engine.scheduler = scheduler_for(engine, concurrency=concurrency)
    from callbridge.process import tune_gc

    tune_gc()  # start-up done: the collector's time goes to deliveries from here
    print(f"callbridge worker {engine.owner} started (work from {kind})", flush=True)
    try:
        await scheduler.run(stop)
    finally:
        await engine.aclose()
        engine.ledger.close()
    print(f"callbridge worker {engine.owner} stopped", flush=True)
    return 0
