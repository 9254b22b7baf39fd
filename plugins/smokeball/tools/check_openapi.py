"""Check recorded Smokeball exchanges against Smokeball's published OpenAPI document.

Smokeball publishes its API reference (OpenAPI 3.0.1) in the public repository
smokeballdev/api-docs as ``reference/swagger.json``. Its licence does not allow
copying it here: fetch it yourself and give its path::

    python plugins/smokeball/tools/check_openapi.py path/to/swagger.json [CASSETTE_DIR ...]

For every interaction of every cassette (default: the plugin's contract cassettes)
it checks, against the document:

* the path (the account id of client-credentials calls taken off) and the method;
* each query parameter's name (ASP.NET reads names case-insensitively);
* the ``x-api-key`` and bearer ``Authorization`` headers the document requires;
* the keys of a JSON request body, and one level inside, against the operation's
  request schema;
* the answer's status against the operation's documented statuses (401, 403, 429
  and 5xx are the gateway's own answers and pass on any operation);
* the keys of a JSON answer, and one level inside (the items of a paged
  collection's ``value`` too), against the schema documented for that status.

Exchanges with another origin (the pre-signed storage upload) are listed as outside
the API. Prints one line per problem and a summary; exits 1 when there are problems.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

API_HOSTS = re.compile(r"^(api|stagingapi)\.smokeball\.(com|com\.au|co\.uk)$")
ACCOUNT = re.compile(r"^/[0-9a-fA-F-]{36}(/.*)$")
GATEWAY_STATUSES = {401, 403, 429, 500, 502, 503, 504}
DEFAULT_CASSETTES = Path(__file__).resolve().parents[1] / "tests" / "cassettes"


@dataclass
class Report:
    checked: int = 0
    outside: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    operations: set[str] = field(default_factory=set)


class Document:
    """The parts of the OpenAPI document the checks read."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.templates = [(self._pattern(p), p) for p in data["paths"]]

    @staticmethod
    def _pattern(template: str) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")

    def template(self, path: str) -> str | None:
        exact = [t for p, t in self.templates if p.match(path)]
        # A literal segment wins over a parameter ("/contacts/batch" over "/contacts/{id}").
        return min(exact, key=lambda t: t.count("{")) if exact else None

    def resolve(self, schema: dict[str, Any] | None) -> dict[str, Any]:
        """A schema with ``$ref`` and ``allOf`` followed: its merged properties."""
        if not schema:
            return {}
        if "$ref" in schema:
            name = schema["$ref"].split("/")[-1]
            return self.resolve(self.data["components"]["schemas"][name])
        if "allOf" in schema:
            merged: dict[str, Any] = {"properties": {}}
            for part in schema["allOf"]:
                merged["properties"].update(self.resolve(part).get("properties", {}))
            return merged
        return schema


def _json(text: Any) -> Any:
    if isinstance(text, dict):
        text = text.get("string")
    if not text:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _keys(doc: Document, value: Any, schema: dict[str, Any], where: str) -> Iterator[str]:
    """Keys of ``value`` the schema does not have, and one level inside."""
    resolved = doc.resolve(schema)
    props = resolved.get("properties")
    if not isinstance(value, dict) or props is None:
        return
    for key, inner in value.items():
        if key not in props:
            yield f"{where} key '{key}' is not in the documented schema"
            continue
        sub = doc.resolve(props[key])
        if isinstance(inner, dict) and sub.get("properties") is not None:
            for k in inner:
                if k not in sub["properties"]:
                    yield f"{where} key '{key}.{k}' is not in the documented schema"
        elif isinstance(inner, list) and sub.get("type") == "array":
            item = doc.resolve(sub.get("items"))
            for entry in inner:
                if isinstance(entry, dict) and item.get("properties") is not None:
                    for k in entry:
                        if k not in item["properties"]:
                            yield f"{where} key '{key}[].{k}' is not in the documented schema"


def _header(headers: dict[str, Any], name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list) else value)
    return None


def check_exchange(doc: Document, request: dict[str, Any], response: dict[str, Any],
                   label: str, report: Report) -> None:
    url = urlsplit(request["uri"])
    method = request["method"].lower()
    if not API_HOSTS.match(url.hostname or ""):
        report.outside.append(f"{label}: {request['method']} {url.hostname}{url.path}")
        return
    report.checked += 1
    path = url.path
    account = ACCOUNT.match(path)
    if account and doc.template(path) is None:
        path = account.group(1)
    template = doc.template(path)
    if template is None:
        report.problems.append(f"{label}: {request['method']} {path}: no such path")
        return
    operation = doc.data["paths"][template].get(method)
    if operation is None:
        report.problems.append(f"{label}: {request['method']} {template}: no such method")
        return
    op = f"{request['method']} {template}"
    report.operations.add(op)
    documented = {p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "query"}
    for name, _ in parse_qsl(url.query, keep_blank_values=True):
        if name.lower() not in documented:
            report.problems.append(f"{label}: {op}: query parameter '{name}' is not documented")
    headers = request.get("headers") or {}
    if not _header(headers, "x-api-key"):
        report.problems.append(f"{label}: {op}: no x-api-key header")
    if not (_header(headers, "authorization") or "").lower().startswith("bearer "):
        report.problems.append(f"{label}: {op}: no bearer Authorization header")
    body = _json(request.get("body"))
    if body is not None:
        content = (operation.get("requestBody") or {}).get("content", {})
        schema = (content.get("application/json") or next(iter(content.values()), {})).get("schema")
        if schema is None:
            report.problems.append(f"{label}: {op}: sends a body the operation does not take")
        else:
            report.problems += [f"{label}: {op}: {p}" for p in _keys(doc, body, schema, "request")]
    status = int(response["status"]["code"])
    answers = operation.get("responses", {})
    if str(status) not in answers:
        if status not in GATEWAY_STATUSES:
            report.problems.append(f"{label}: {op}: status {status} is not documented")
        return
    answer = _json(response.get("body"))
    schema = (answers[str(status)].get("content", {}).get("application/json") or {}).get("schema")
    if answer is not None and schema is not None:
        report.problems += [f"{label}: {op}: {p}"
                            for p in _keys(doc, answer, schema, f"answer {status}")]


def check(document: Path, folders: list[Path]) -> Report:
    doc = Document(json.loads(document.read_text(encoding="utf-8")))
    report = Report()
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            cassette = yaml.safe_load(path.read_text(encoding="utf-8"))
            for index, item in enumerate(cassette.get("interactions", [])):
                check_exchange(doc, item["request"], item["response"],
                               f"{path.name}#{index}", report)
    return report


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    folders = [Path(a) for a in argv[1:]] or [DEFAULT_CASSETTES]
    report = check(Path(argv[0]), folders)
    for line in report.problems:
        print(f"PROBLEM {line}")
    print(f"checked {report.checked} API exchanges over {len(report.operations)} operations; "
          f"{len(report.outside)} outside the API (storage uploads); "
          f"{len(report.problems)} problem(s)")
    for op in sorted(report.operations):
        print(f"  {op}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
