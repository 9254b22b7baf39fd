"""``callbridge ingest`` and ``drain``: events through the engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from callbridge.commands import fail, runtime


def ingest(file: Path, config: Path | None, rejects: Path | None, dry_run: bool, wait_max: float,
           no_wait: bool, as_json: bool) -> None:
    """Feed events from a file through every connected app and show the outcomes."""
    from callbridge.ingesting import run_ingest
    from callbridge.process import tune_gc

    rt = runtime(config)
    try:
        stream = file.open("rb")
    except OSError as exc:
        raise fail(f"{file}: cannot be read ({exc.strerror})") from None

    async def go() -> int:
        engine = rt.engine(dry_run=dry_run)
        tune_gc()  # start-up done: the collector's time goes to events from here
        try:
            return await run_ingest(engine, rt.settings.current(), file, stream, rejects=rejects,
                                    dry_run=dry_run, as_json=as_json, wait_max=wait_max,
                                    no_wait=no_wait)
        finally:
            await engine.aclose()

    with stream:
        code = asyncio.run(go())
    raise typer.Exit(code)


def drain(config: Path | None, wait_max: float, as_json: bool) -> None:
    """Resume queued work: log every pending and waiting delivery, waiting up to wait_max."""
    from callbridge.ingesting import run_drain
    from callbridge.process import tune_gc

    rt = runtime(config)

    async def go() -> int:
        engine = rt.engine()
        tune_gc()
        try:
            return await run_drain(engine, wait_max=wait_max, as_json=as_json)
        finally:
            await engine.aclose()

    raise typer.Exit(asyncio.run(go()))
