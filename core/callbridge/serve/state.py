"""What every route module of the server shares, and the JSON error every route answers with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from callbridge.clock import Clock

if TYPE_CHECKING:
    from callbridge.engine import Engine
    from callbridge.quarantine import Quarantine
    from callbridge.runtime import Runtime
    from callbridge.serve.metrics import Metrics


@dataclass
class ServerState:
    """The server's parts, handed to each route module's ``routes(state)``."""

    runtime: Runtime
    """Settings source, plugin registry, the settings file's path."""
    engine: Engine
    """Intake, worker, scheduler; ``engine.ledger`` is the ledger."""
    clock: Clock
    quarantine: Quarantine
    """Where refused requests are kept (``callbridge quarantine`` reads it)."""
    metrics: Metrics
    base_url: str
    """The public base URL (setting ``serve.public_url``; default ``http://host:port``)."""
    worker: bool = True
    """Whether this process runs the worker and the scheduler (``--no-worker``: intake only)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Room for a route module's own objects, keyed by its module name."""


def json_error(status: int, field: str, problem: str,
               headers: dict[str, str] | None = None) -> JSONResponse:
    """The server's error answer: ``{"error": {"field": ..., "problem": ...}}``.

    ``problem`` names what is wrong, never the value received. To answer with it from
    deep inside a route, raise :class:`callbridge.serve.auth.ApiError`.
    """
    return JSONResponse({"error": {"field": field, "problem": problem}}, status_code=status,
                        headers=headers)
