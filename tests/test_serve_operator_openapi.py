"""The operator API's OpenAPI document: published as generated, every reference
resolves, every route of the API is described (and nothing else), and the server
serves the same text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callbridge.serve import oauth, operator
from callbridge.serve.operator_models import document, render
from starlette.routing import Route

from tests.test_serve_openapi import refs, resolve

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "docs" / "operator-openapi.json"


def test_the_published_document_is_the_generated_one() -> None:
    assert PUBLISHED.read_text() == render(), "run: python tools/gen_operator_openapi.py"


def test_every_reference_resolves_inside_the_document() -> None:
    doc = document()
    found = refs(doc)
    assert "#/components/schemas/OutcomeOut" in found
    for ref in found:
        resolve(doc, ref)
    status = doc["components"]["schemas"]["OutcomeStatus"]["enum"]
    assert {"waiting", "parked", "dead", "unresolved"} <= set(status)


class _State:
    runtime: Any = None
    engine: Any = type("E", (), {"ledger": None})()
    clock: Any = None
    base_url = "http://serve.test"


def test_every_route_of_the_api_is_described_and_nothing_else() -> None:
    served = set()
    for route in [*operator.routes(_State()), *oauth.routes(_State())]:
        assert isinstance(route, Route)
        if not route.path.startswith("/v1/operator/") or route.path.endswith("openapi.json"):
            continue
        path = route.path.replace(":int}", "}")
        served |= {(path, m.lower()) for m in route.methods or () if m != "HEAD"}
    described = {(path, method) for path, item in document()["paths"].items()
                 for method in item}
    assert served == described


async def test_the_server_serves_the_published_text() -> None:
    import httpx2
    from starlette.applications import Starlette

    app = Starlette(routes=operator.routes(_State()))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                  base_url="http://serve.test") as client:
        answer = await client.get("/v1/operator/openapi.json")
    assert answer.status_code == 200 and answer.text == PUBLISHED.read_text()
