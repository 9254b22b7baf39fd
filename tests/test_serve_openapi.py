"""The intake's OpenAPI document: published as generated, every reference resolves,
every answer the intake gives is described, and the server serves the same text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callbridge.serve.intake import PATH, REASONS
from callbridge.serve.openapi import document, render

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "docs" / "intake-openapi.json"


def test_the_published_document_is_the_generated_one() -> None:
    assert PUBLISHED.read_text() == render(), "run: python tools/gen_intake_openapi.py"


def refs(node: Any) -> list[str]:
    """Every ``$ref`` in an OpenAPI document (the operator API's test uses it too)."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for k, v in node.items() if k != "$ref" for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(doc: Any, ref: str) -> Any:
    """The node a local ``$ref`` names (a KeyError if it names none)."""
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_every_reference_resolves_inside_the_document() -> None:
    doc = document()
    found = refs(doc)
    assert "#/components/schemas/CallEvent" in found
    for ref in found:
        resolve(doc, ref)
    mapping = doc["components"]["schemas"]["Event"]["discriminator"]["mapping"]
    assert set(mapping) == {"call", "sms", "fax"}


def test_every_answer_of_the_intake_is_described() -> None:
    responses = document()["paths"][PATH]["post"]["responses"]
    assert set(responses) == {"200"} | {str(s) for s in REASONS}
    assert document()["openapi"] == "3.1.0"
    call = document()["components"]["schemas"]["CallEvent"]
    assert "tenant" not in call["required"] and "id" in call["required"]


async def test_the_server_serves_the_published_text() -> None:
    import httpx2
    from callbridge.serve.openapi import routes
    from starlette.applications import Starlette

    app = Starlette(routes=routes(None))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                  base_url="http://serve.test") as client:
        answer = await client.get("/v1/openapi.json")
    assert answer.status_code == 200 and answer.text == PUBLISHED.read_text()
