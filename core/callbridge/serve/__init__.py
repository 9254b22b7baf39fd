"""``callbridge serve``: the host as a web service (the ``callbridge[serve]`` extra).

An ASGI app (Starlette, served by uvicorn) that takes events over HTTP from phone
systems (``POST /v1/sources/{tenant}/{source}``), answers health and metrics, and
runs the worker and the scheduler in the same process. Each part of the URL space
is a module with ``routes(state)``, listed in :data:`callbridge.serve.app.ROUTE_MODULES`.

Nothing on the runtime path of ``ingest``, ``drain`` or the engine imports this
package: starlette and uvicorn are needed only to serve.
"""

from __future__ import annotations

#: What to install when the server's libraries are missing.
EXTRA_HINT = "callbridge serve needs the serve extra: pip install 'callbridge[serve]'"


def missing_libraries() -> list[str]:
    """The server's libraries that are not installed (empty when serving can start)."""
    import importlib.util

    return [name for name in ("starlette", "uvicorn", "prometheus_client")
            if importlib.util.find_spec(name) is None]
