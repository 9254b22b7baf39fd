"""Workers: the processes that log deliveries, on one machine or many.

Every process works from the ledger (the source of truth for outcomes, records and
fencing). Which scheduler says when work is due depends on ``workers.queue``:

* ``ledger`` — :class:`callbridge.scheduler.InProcessScheduler`: each process polls
  the ledger for due deliveries and runs the periodic units itself (the SQLite default);
* ``procrastinate`` — :class:`callbridge.workers.queue.QueueScheduler`: the work units
  are jobs on a Procrastinate task queue kept in the ledger's PostgreSQL database, so
  N ``callbridge worker`` processes share them (docs/architecture.md says why
  Procrastinate).

Nothing here imports Procrastinate; :mod:`callbridge.workers.queue` does.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import sqlalchemy as sa

from callbridge.errors import ConfigError

if TYPE_CHECKING:
    from callbridge.engine import Engine
    from callbridge.scheduler import InProcessScheduler

EXTRA_HINT = "pip install 'callbridge[workers]'"


def installed() -> bool:
    """Whether Procrastinate (the ``workers`` extra) is installed."""
    return importlib.util.find_spec("procrastinate") is not None


def uses_queue(engine: Engine) -> bool:
    """Whether this engine's work units go on the task queue (``workers.queue``)."""
    choice = engine.config.workers.queue
    postgres = sa.engine.make_url(engine.ledger.url).get_backend_name() == "postgresql"
    if choice == "ledger":
        return False
    if choice == "procrastinate":
        if not postgres:
            raise ConfigError("workers.queue: procrastinate needs a PostgreSQL ledger "
                              "(ledger.url postgresql+psycopg://...)")
        if not installed():
            raise ConfigError(f"workers.queue: procrastinate is not installed ({EXTRA_HINT})")
        return True
    return postgres and installed()


def scheduler_for(engine: Engine, *, concurrency: int | None = None) -> InProcessScheduler:
    """The scheduler this engine's settings ask for (the engine's own one for ``ledger``);
    ``concurrency`` overrides ``workers.concurrency`` for this process."""
    if not uses_queue(engine):
        return engine.scheduler
    from callbridge.workers.queue import QueueScheduler

    return QueueScheduler(engine, concurrency=concurrency)
