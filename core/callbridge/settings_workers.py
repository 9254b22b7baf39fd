"""Settings of the workers: which scheduler runs the work units, and how many at once."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from callbridge.settings_base import _STRICT


class WorkerSettings(BaseModel):
    """``callbridge worker`` (and the worker inside ``callbridge serve``).

    ``queue``: ``ledger`` runs the work units in each process, polling the ledger;
    ``procrastinate`` puts them on a task queue in the ledger's PostgreSQL database
    (``pip install 'callbridge[workers]'``); ``auto`` picks the task queue when the
    ledger is PostgreSQL and Procrastinate is installed, else the ledger.
    """

    model_config = _STRICT

    queue: Literal["auto", "ledger", "procrastinate"] = "auto"
    concurrency: int = Field(
        default=16, ge=1, le=1000,
        description="connections (tenant, app) one worker process works at once")
    heartbeat_seconds: float = Field(
        default=5.0, gt=0, le=300, description="how often a worker says it is alive")
    stalled_after_seconds: float = Field(
        default=20.0, gt=0, le=3600,
        description="a worker silent this long is taken for dead; its jobs run elsewhere")
    slice_seconds: float = Field(
        default=30.0, gt=0, le=3600,
        description="how long one connection's job works before it queues its remainder")
