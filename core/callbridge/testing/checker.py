"""The cassette checker: no secret and no real phone number in a committed cassette.

Scrubbing runs when a cassette is recorded; a cassette edited by hand, recorded
by another tool or rewritten by a hook that was silently skipped is caught
here. :func:`check_cassettes` reads every ``*.yaml`` / ``*.yml`` / ``*.json``
cassette under a folder as plain data (not through vcrpy, whose load hooks
could hide a value) and reports, per interaction:

* a ``Bearer`` credential of 16 or more characters;
* a credential header (``Authorization``, ``Cookie``, ``Set-Cookie``, API-key
  and token headers) with a value of 16 or more characters;
* a ``token`` / ``secret`` / ``password`` / ``api_key`` field (JSON, query
  string or form body) with a value of 16 or more characters;
* a phone number that ``phonenumbers`` reads as valid and that lies outside the
  fictional ranges (:mod:`callbridge.testing.fictional`);
* a cassette with no recording date in its metadata.

Values that are obviously placeholders (``SCRUBBED``, ``[redacted]``,
``placeholder``, ``xxxx``...) pass. Every problem names the file, the
interaction, the masked value and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import phonenumbers

from callbridge.phones import mask_number
from callbridge.testing.fictional import is_fictional

__all__ = ["FIX", "CassetteProblem", "check_cassettes", "mask_secret"]

#: What to do about any problem the checker finds.
FIX = ("re-record with CALLBRIDGE_RECORD_MODE=once so the kit's scrubber runs, "
       "or edit the value to a fictional one")

_MIN_SECRET = 16
_PLACEHOLDERS = ("scrubbed", "redacted", "placeholder", "example", "dummy", "fake", "xxxx",
                 "****", "<", "changeme")
_BEARER = re.compile(r"\bBearer\s+([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_SECRET_NAME = r"[\w-]*(?:token|secret|password|passwd|api[_-]?key|apikey|client_secret)[\w-]*"
_JSON_FIELD = re.compile(rf"[\"']({_SECRET_NAME})[\"']\s*:\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_FORM_FIELD = re.compile(rf"(?<![\w-])({_SECRET_NAME})=([^&\s\"'#]+)", re.IGNORECASE)
_SECRET_HEADER = re.compile(
    r"^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|api-key|apikey|"
    rf"{_SECRET_NAME})$", re.IGNORECASE)


def mask_secret(value: str) -> str:
    """The first 4 characters and ``***``: enough to find it, not enough to use it."""
    return value[:4] + "***"


def _placeholder(value: str) -> bool:
    low = value.lower().strip()
    if len(set(low)) <= 1:
        return True
    return any(mark in low for mark in _PLACEHOLDERS)


@dataclass(frozen=True)
class CassetteProblem:
    """One value that must not be in a cassette."""

    file: Path
    interaction: int  # 0-based, as in the file's ``interactions`` list
    request: str  # "GET /contacts": method and path, never the query
    where: str  # "request header Authorization", "response body", ...
    kind: str  # "bearer token", "secret field 'api_key'", "real phone number"...
    masked: str
    fix: str = FIX

    def __str__(self) -> str:
        if self.interaction < 0:
            return f"{self.file}: {self.kind}; fix: {self.fix}"
        return (f"{self.file}: interaction {self.interaction} ({self.request}), {self.where}: "
                f"{self.kind} {self.masked}; fix: {self.fix}")


def _secret_problems(text: str, where: str, header: str | None = None
                     ) -> Iterator[tuple[str, str, str]]:
    """(where, kind, masked) for every secret-looking value in ``text``."""
    seen: set[str] = set()
    for match in _BEARER.finditer(text):
        token = match.group(1)
        if len(token) >= _MIN_SECRET and not _placeholder(token):
            seen.add(token)
            yield where, "bearer token", f"Bearer {mask_secret(token)}"
    if header is not None and _SECRET_HEADER.match(header):
        value = text.split(" ", 1)[1] if text.lower().startswith(("bearer ", "basic ")) else text
        value = value.split("=", 1)[1] if header.lower() in {"cookie", "set-cookie"} \
            and "=" in value else value
        value = value.split(";", 1)[0].strip()
        if value not in seen and len(value) >= _MIN_SECRET and not _placeholder(value):
            seen.add(value)
            yield where, f"credential in header {header}", mask_secret(value)
    for pattern in (_JSON_FIELD, _FORM_FIELD):
        for match in pattern.finditer(text):
            name, value = match.group(1), match.group(2)
            if value not in seen and len(value) >= _MIN_SECRET and not _placeholder(value):
                seen.add(value)
                yield where, f"secret field '{name}'", mask_secret(value)


def _number_problems(text: str, where: str, region: str) -> Iterator[tuple[str, str, str]]:
    for match in phonenumbers.PhoneNumberMatcher(text, region,
                                                 leniency=phonenumbers.Leniency.VALID):
        if not is_fictional(match.number):
            yield where, "real phone number (outside the fictional ranges)", \
                mask_number(match.raw_string)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):  # a body stored as {"string": ...}
        return _text(value.get("string", json.dumps(value)))
    return str(value)


def _headers(raw: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(raw, dict):
        return
    for name, values in raw.items():
        for value in values if isinstance(values, list) else [values]:
            yield str(name), _text(value)


def _load(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    import yaml  # type: ignore[import-untyped]

    return yaml.safe_load(text)


def check_cassette(path: Path, *, region: str = "US") -> list[CassetteProblem]:
    """Every problem in one cassette file."""
    try:
        data = _load(path)
    except Exception as exc:  # a file that does not parse cannot be vouched for
        return [CassetteProblem(path, -1, "", "", f"cannot be read ({type(exc).__name__})", "")]
    if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
        return [CassetteProblem(path, -1, "", "", "is not a vcrpy cassette", "")]
    problems: list[CassetteProblem] = []
    metadata = data.get("metadata")
    if not (isinstance(metadata, dict) and metadata.get("recorded")):
        problems.append(CassetteProblem(
            path, -1, "", "", "has no 'recorded' entry in its metadata (what it was recorded "
            "against and when)", "",
            fix="re-record with CALLBRIDGE_RECORD_MODE=once, or add "
                "metadata: {recorded: 'recorded against the <app> sandbox on <date>'}"))
    for index, interaction in enumerate(data["interactions"]):
        request = interaction.get("request") or {}
        response = interaction.get("response") or {}
        uri = _text(request.get("uri"))
        label = f"{request.get('method', '?')} {urlsplit(uri).path or '/'}"
        found: list[tuple[str, str, str]] = []
        found += _secret_problems(unquote(uri), "request URI")
        found += _number_problems(unquote(uri), "request URI", region)
        for name, value in _headers(request.get("headers")):
            found += _secret_problems(value, f"request header {name}", header=name)
            found += _number_problems(value, f"request header {name}", region)
        body = _text(request.get("body"))
        found += _secret_problems(unquote(body) if "=" in body else body, "request body")
        found += _number_problems(body, "request body", region)
        for name, value in _headers(response.get("headers")):
            found += _secret_problems(value, f"response header {name}", header=name)
            found += _number_problems(value, f"response header {name}", region)
        rbody = _text(response.get("body"))
        found += _secret_problems(rbody, "response body")
        found += _number_problems(rbody, "response body", region)
        problems += [CassetteProblem(path, index, label, where, kind, masked)
                     for where, kind, masked in found]
    return problems


def cassette_files(folder: Path) -> list[Path]:
    """The cassette files under ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix in {".yaml", ".yml", ".json"}
                  and p.is_file())


def check_cassettes(folder: Path, *, region: str = "US") -> list[CassetteProblem]:
    """Every problem in every cassette under ``folder``."""
    problems: list[CassetteProblem] = []
    for path in cassette_files(folder):
        problems += check_cassette(path, region=region)
    return problems
