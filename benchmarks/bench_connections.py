"""How long a tenant's connection takes to set up, and how many pools N tenants use.

For each of N tenants of one app (the notebook plugin, bearer auth): settings →
options → connection → credentials → client through
:class:`callbridge.connections.Connections`, timed one by one; then one request
per tenant to the notebook server on loopback, and the pools counted.

Usage: python benchmarks/bench_connections.py [--tenants 1000]
Prints JSON: setup time per tenant (median, p99, max, in ms) and the pool count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import callbridge_notebook
from callbridge.connections import Connections
from callbridge.faults import serve_in_thread
from callbridge.httpauth import Credentials
from callbridge.plugins import Registry
from callbridge.settings import AppSettings, TenantSettings
from callbridge_notebook.server import NotebookState, create_app


async def measure(url: str, tenants: int) -> dict[str, Any]:
    registry = Registry()
    registry.add(callbridge_notebook, distribution="callbridge-notebook")
    factory = Connections(registry, credentials=lambda s: Credentials(
        token=f"token-{s.credentials_env}"))
    settings = {f"firm{n:05d}": TenantSettings(apps={"notebook": AppSettings(
        credentials_env=f"FIRM{n:05d}", options={"base_url": url, "auth": "bearer"})})
        for n in range(tenants)}
    times: list[float] = []
    clients = []
    try:
        for tenant_id, tenant in settings.items():
            started = time.perf_counter()
            _, client = factory.client(tenant_id, tenant, "notebook")
            times.append((time.perf_counter() - started) * 1000)
            clients.append(client)
        sem = asyncio.Semaphore(64)

        async def one(client: Any) -> int:
            async with sem:
                return int((await client.get("/users")).status_code)

        statuses = await asyncio.gather(*(one(c) for c in clients))
        pools = factory.pool_count()
    finally:
        await factory.aclose()
    first = times[0]
    times.sort()
    return {
        "tenants": tenants,
        "first_ms": round(first, 3),
        "setup_ms": {"median": round(statistics.median(times), 3),
                     "p99": round(times[int(len(times) * 0.99) - 1], 3),
                     "max": round(times[-1], 3)},
        "requests_ok": sum(1 for s in statuses if s == 200),
        "pools": pools,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tenants", type=int, default=1000)
    args = parser.parse_args()
    with serve_in_thread(create_app(NotebookState())) as url:
        print(json.dumps(asyncio.run(measure(url, args.tenants)), indent=2))


if __name__ == "__main__":
    main()
