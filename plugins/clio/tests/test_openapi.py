"""Every recorded request and response, and the sandbox's answers, against the OpenAPI
document Clio publishes (inside its `clio-cli` 1.0.5 wheel on the package index).

The document is fetched at test time and never committed. Checked: the path and
method exist; every query parameter is documented for the operation; every key of a
JSON request's ``data`` is a documented property; the answer's status is documented;
the keys of a 2xx answer's ``data`` are documented properties. What the document
does not know is listed in ALLOWED, each with its reason.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

CASSETTES = Path(__file__).parent / "cassettes"
WHEEL = "clio-cli==1.0.5"
MEMBER = "openapi_server/openapi/openapi.yaml"
BASE = "/api/v4"

#: What the plugin or sandbox sends or answers that the document does not describe.
ALLOWED: dict[tuple[str, str], str] = {
    ("path", "PUT /storage/{uuid}"): "the pre-signed storage URL Clio hands out (put_url) is "
                                     "not part of the API; its shape comes from put_url/put_headers",
}


@cache
def openapi() -> dict[str, Any]:
    cache_dir = Path.home() / ".cache" / "callbridge" / "clio-cli"
    wheels = sorted(cache_dir.glob("clio_cli-1.0.5-*.whl"))
    if not wheels:
        cache_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                                 WHEEL, "-d", str(cache_dir)], capture_output=True, text=True,
                                timeout=300)
        wheels = sorted(cache_dir.glob("clio_cli-1.0.5-*.whl"))
        if result.returncode != 0 or not wheels:
            pytest.skip(f"Clio's OpenAPI document could not be fetched ({WHEEL} from the package "
                        "index); these checks need it")

    class Loader(yaml.SafeLoader):
        pass

    # The document has bare `=` scalars, which PyYAML reads as its "value" tag.
    Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        doc: dict[str, Any] = yaml.load(wheel.read(MEMBER), Loader=Loader)
    return doc


def resolve(node: Any) -> Any:
    doc = openapi()
    while isinstance(node, dict) and "$ref" in node:
        target: Any = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def properties(schema: Any) -> dict[str, Any] | None:
    """A schema's properties (allOf merged); None when the document leaves it open."""
    schema = resolve(schema)
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == "array":
        return properties(schema.get("items"))
    found: dict[str, Any] = {}
    for part in schema.get("allOf", []):
        found.update(properties(part) or {})
    found.update(schema.get("properties", {}))
    return found or None


def operation(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    for template, item in openapi()["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    return None


def parameters(op: dict[str, Any]) -> set[str]:
    return {resolve(p)["name"] for p in op.get("parameters", [])}


def data_keys(schema_ref: Any) -> set[str] | None:
    props = properties(schema_ref)
    if props is None or "data" not in props:
        return None
    inner = properties(props["data"])
    return set(inner) if inner is not None else None


def check_exchange(method: str, url: str, body: Any, status: int, answer: Any) -> list[str]:
    """The problems of one request and its answer; [] when the document agrees."""
    path = urlsplit(url).path
    problems: list[str] = []
    if not path.startswith(BASE):
        template = re.sub(r"/storage/[^/]+", "/storage/{uuid}", path)
        return [] if ("path", f"{method} {template}") in ALLOWED else [f"{method} {path}: not an API path"]
    api_path = path[len(BASE):]
    found = operation(method, api_path)
    if found is None:
        return [f"{method} {api_path}: no such operation in the document"]
    template, op = found
    known = parameters(op)
    for name, _ in parse_qsl(urlsplit(url).query):
        if name not in known:
            problems.append(f"{method} {template}: query parameter {name!r} is not documented")
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        content = (op.get("requestBody") or {}).get("content", {})
        schema = (content.get("application/json") or {}).get("schema")
        keys = data_keys(schema) if schema else None
        if keys is not None:
            for key in body["data"]:
                if key not in keys and ("request", f"{method} {template}:{key}") not in ALLOWED:
                    problems.append(f"{method} {template}: request data key {key!r} is not documented")
    responses = op.get("responses", {})
    if status >= 500:
        pass  # server errors: any API may answer them; the document lists none
    elif str(status) not in responses and "default" not in responses:
        problems.append(f"{method} {template}: status {status} is not documented")
    elif 200 <= status < 300 and isinstance(answer, dict) and "data" in answer:
        content = responses.get(str(status), {}).get("content", {})
        schema = next((c.get("schema") for k, c in content.items() if "json" in k), None)
        keys = data_keys(schema) if schema else None
        items = answer["data"] if isinstance(answer["data"], list) else [answer["data"]]
        for item in items:
            for key in item if keys is not None else []:
                if key not in keys:
                    problems.append(f"{method} {template}: answer data key {key!r} is not documented")
    return problems


def recorded() -> Iterator[tuple[str, int, str, str, Any, int, Any]]:
    for path in sorted(CASSETTES.glob("*.yaml")):
        cassette = yaml.safe_load(path.read_text())
        for i, exchange in enumerate(cassette["interactions"]):
            request, response = exchange["request"], exchange["response"]

            def parse(text: Any) -> Any:
                try:
                    return json.loads(text) if text else None
                except (TypeError, ValueError):
                    return None
            yield (path.name, i, request["method"], request["uri"], parse(request.get("body")),
                   response["status"]["code"], parse(response["body"].get("string")))


def test_the_document_is_clios_api_v4() -> None:
    doc = openapi()
    assert doc["info"]["version"] == "v4"
    assert "https://app.clio.com/api/v4" in [s["url"] for s in doc["servers"]]


def test_every_recorded_exchange_agrees_with_clios_document() -> None:
    problems = []
    count = 0
    for name, i, method, url, body, status, answer in recorded():
        count += 1
        problems += [f"{name} #{i}: {p}" for p in check_exchange(method, url, body, status, answer)]
    assert count > 30
    assert problems == []


def test_the_checker_catches_what_the_document_does_not_know() -> None:
    assert check_exchange("GET", "https://app.clio.com/api/v4/contacts.json?colour=red", None, 200, None)
    assert check_exchange("POST", "https://app.clio.com/api/v4/calls.json", None, 201, None)
    assert check_exchange("POST", "https://app.clio.com/api/v4/communications.json",
                          {"data": {"subject": "x", "mood": "happy"}}, 201, None)


async def test_the_sandboxs_answers_agree_with_clios_document() -> None:
    """Drive the sandbox through every endpoint the plugin uses."""
    import time

    import httpx2
    from callbridge_clio.sandbox import SandboxState, create_app

    st = SandboxState()
    ann = st.add_user("Ann Lee", "ann@firm.example")
    dana = st.add_contact("Dana", "Whitfield", ["(212) 555-0142"], ["dana@example.com"])
    matter = st.add_matter(dana, "Lease dispute")
    st.relate(dana, matter)
    st.add_custom_field("BroadlyOptOut", "Contact")
    st.add_activity_description("Telephone")
    token = st.issue_token(ann)["access_token"]
    st.tokens[token] = time.time() + 3600
    problems: list[str] = []
    transport = httpx2.ASGITransport(app=create_app(st, faults=False))
    async with httpx2.AsyncClient(transport=transport, base_url="https://app.clio.com",
                                  headers={"Authorization": f"Bearer {token}"}) as client:
        async def go(method: str, path: str, params: dict[str, Any] | None = None,
                     body: Any = None) -> Any:
            r = await client.request(method, BASE + path, params=params, json=body)
            answer = r.json() if r.content and "json" in r.headers.get("content-type", "") else None
            problems.extend(check_exchange(method, str(r.request.url), body, r.status_code, answer))
            return answer

        await go("GET", "/contacts.json", {"query": "0142", "fields": "id,name,phone_numbers{number}"})
        await go("GET", "/matters.json", {"client_id": dana, "status": "open,pending",
                                          "fields": "id,display_number,status,client{id,name}"})
        await go("GET", "/relationships.json", {"contact_id": dana, "fields": "id,matter{id,status}"})
        await go("GET", "/users.json", {"fields": "id,name,email"})
        await go("GET", "/users/who_am_i.json", {"fields": "id,name,email"})
        await go("GET", "/custom_fields.json", {"parent_type": "contact", "fields": "id,name,field_type"})
        await go("GET", "/activity_descriptions.json", {"fields": "id,name"})
        created = await go("POST", "/contacts.json", {"fields": "id,name"},
                           {"data": {"type": "Person", "first_name": "Rae", "last_name": "Quinn",
                                     "phone_numbers": [{"name": "Work", "number": "+17185550101",
                                                        "default_number": True}]}})
        await go("POST", "/contacts.json", {"fields": "id"}, {"data": {"type": "Person"}})  # 422
        comm = await go("POST", "/communications.json", {"fields": "id,subject"}, {"data": {
            "type": "PhoneCommunication", "subject": "Call", "body": "b",
            "received_at": "2026-03-02T15:00:00Z", "matter": {"id": matter},
            "senders": [{"id": created["data"]["id"], "type": "Contact"}],
            "receivers": [{"id": ann, "type": "User"}],
            "external_properties": [{"name": "callbridge_event", "value": "cb1-x"}]}})
        await go("PATCH", f"/communications/{comm['data']['id']}.json", {"fields": "id,body"},
                 {"data": {"body": "updated"}})
        await go("GET", "/communications.json", {"external_property_name": "callbridge_event",
                                                 "external_property_value": "cb1-x", "fields": "id"})
        await go("POST", "/activities.json", {"fields": "id,quantity"}, {"data": {
            "type": "TimeEntry", "date": "2026-03-02", "quantity": 360,
            "communication": {"id": comm["data"]["id"]}, "non_billable": True, "note": "Phone call"}})
        await go("GET", "/activities.json", {"communication_id": comm["data"]["id"], "fields": "id"})
        folder = await go("POST", "/folders.json", {"fields": "id,name"},
                          {"data": {"name": "Faxes", "parent": {"id": matter, "type": "Matter"}}})
        await go("GET", "/folders.json", {"matter_id": matter, "query": "Faxes", "fields": "id,name"})
        doc = await go("POST", "/documents.json",
                       {"fields": "id,latest_document_version{uuid,put_url,put_headers}"},
                       {"data": {"name": "Fax.pdf", "parent": {"id": folder["data"]["id"], "type": "Folder"},
                                 "communication_id": comm["data"]["id"],
                                 "external_properties": [{"name": "callbridge_event", "value": "cb1-x"}]}})
        await go("PATCH", f"/documents/{doc['data']['id']}.json", {"fields": "id"},
                 {"data": {"uuid": doc["data"]["latest_document_version"]["uuid"], "fully_uploaded": True}})
        await go("GET", "/documents.json", {"external_property_name": "callbridge_event",
                                            "external_property_value": "cb1-x",
                                            "show_uncompleted": "true", "fields": "id"})
        await go("GET", "/contacts.json", {"fields": "id"}, None)
        client.headers["Authorization"] = "Bearer revoked"
        await go("GET", "/users.json", {"fields": "id"})  # 401
    assert problems == []
