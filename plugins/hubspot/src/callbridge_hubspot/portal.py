"""The sandbox's portal: HubSpot's data and rules, in memory, for :mod:`.sandbox`.

What it keeps as HubSpot documents it: records with string properties, ids as
strings, association type ids (call→contact 194, communication→contact 81,
note→contact 202), the normalised phone properties
(``hs_searchable_calculated_*``: the national number, no country code), search
limits (5 filter groups, 6 filters a group, 18 in all, 200 a page, 10,000 results,
3,000 characters a body), and eventual consistency: a write becomes visible to
search ``search_delay`` seconds later, by the injected clock.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import phonenumbers
from callbridge.clock import SYSTEM, Clock

ENV_SEED = "CALLBRIDGE_HUBSPOT_SANDBOX_SEED"
DEFINITIONS: dict[str, Any] = json.loads(
    resources.files("callbridge_hubspot").joinpath("properties.json").read_text())
ASSOCIATION_TYPES = {("calls", "contacts"): 194, ("communications", "contacts"): 81,
                     ("notes", "contacts"): 202}
OPERATORS = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
             "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}
MAX_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS, MAX_LIMIT, MAX_RESULTS, MAX_BODY = 5, 6, 18, 200, 10_000, 3000


class ApiError(Exception):
    """An error answer: status and HubSpot's Error object."""

    def __init__(self, status: int, category: str, message: str, *,
                 context: dict[str, list[str]] | None = None,
                 errors: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message,
                                     "correlationId": "00000000-0000-4000-8000-000000000000",
                                     "category": category, **extra}
        if context:
            self.body["context"] = context
        if errors:
            self.body["errors"] = errors


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(value: str) -> float | None:
    """A number, or a date/datetime as epoch milliseconds."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


@dataclass
class Portal:
    """One HubSpot account. Seed it with the ``add_*`` methods; read it back in tests."""

    clock: Clock = SYSTEM
    portal_id: int = 62515
    time_zone: str = "America/New_York"
    region: str = "US"  # how HubSpot reads stored numbers for its calculated properties
    search_delay: float = 0.0
    batch_errors: Literal["207", "400"] = "207"
    tokens: set[str] = field(default_factory=set)
    owners: list[dict[str, Any]] = field(default_factory=list)
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {
        t: {} for t in ("contacts", "calls", "communications", "notes")})
    associations: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    custom_properties: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    file_bytes: dict[str, bytes] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(101))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_id(self) -> str:
        with self._lock:
            return str(next(self._ids))

    # --- seeding --------------------------------------------------------------------------

    def add_owner(self, first: str, last: str, email: str) -> str:
        oid = self.next_id()
        now = iso(self.clock.now())
        self.owners.append({"id": oid, "email": email, "type": "PERSON", "firstName": first,
                            "lastName": last, "userId": 9000 + int(oid),
                            "userIdIncludingInactive": 9000 + int(oid), "createdAt": now,
                            "updatedAt": now, "archived": False, "teams": []})
        return oid

    def add_contact(self, first: str, last: str, phone: str | None = None,
                    mobile: str | None = None, email: str | None = None, *,
                    modified: str | None = None) -> str:
        props = {"firstname": first, "lastname": last, "phone": phone, "mobilephone": mobile,
                 "email": email}
        cid = self.write("contacts", {k: v for k, v in props.items() if v is not None}, [],
                         visible_now=True)
        if modified:
            record = self.objects["contacts"][cid]
            record["properties"]["lastmodifieddate"] = modified
            record["properties"]["createdate"] = modified
            record["createdAt"] = record["updatedAt"] = modified
            record["versions"] = [(0.0, dict(record["properties"]))]
        return cid

    # --- properties -----------------------------------------------------------------------

    def definition(self, object_type: str, name: str) -> dict[str, Any] | None:
        known = DEFINITIONS["objects"].get(object_type, {}).get(name)
        return known or self.custom_properties.get(object_type, {}).get(name)

    def check_properties(self, object_type: str, props: dict[str, Any], *, creating: bool) -> None:
        problems = []
        for name, value in props.items():
            spec = self.definition(object_type, name)
            if spec is None:
                problems.append({"message": f'Property "{name}" does not exist',
                                 "code": "PROPERTY_DOESNT_EXIST",
                                 "context": {"propertyName": [name]}})
            elif spec.get("read_only"):
                problems.append({"message": f'"{name}" is a read only property',
                                 "code": "READ_ONLY_VALUE", "context": {"propertyName": [name]}})
            elif not isinstance(value, str):
                problems.append({"message": f'"{name}" must be a string', "code": "INVALID_TYPE",
                                 "context": {"propertyName": [name]}})
            elif len(value) > 65_536:
                problems.append({"message": f'"{name}" exceeds 65536 characters',
                                 "code": "INVALID_LENGTH", "context": {"propertyName": [name]}})
            elif spec.get("options") and value not in spec["options"]:
                problems.append({"message": f"{value!r} was not one of the allowed options",
                                 "code": "INVALID_OPTION", "context": {"propertyName": [name]}})
            elif spec.get("type") == "number" and _ms(value) is None:
                problems.append({"message": "not a number", "code": "INVALID_INTEGER",
                                 "context": {"propertyName": [name]}})
            elif spec.get("type") == "datetime" and _ms(value) is None:
                problems.append({"message": "not a date", "code": "INVALID_DATE",
                                 "context": {"propertyName": [name]}})
        if creating:
            for name, spec in DEFINITIONS["objects"].get(object_type, {}).items():
                if spec.get("required") and name not in props:
                    problems.append({"message": f'"{name}" is required', "code": "REQUIRED",
                                     "context": {"propertyName": [name]}})
        if problems:
            raise ApiError(400, "VALIDATION_ERROR", "Property values were not valid",
                           errors=problems)

    def check_associations(self, object_type: str, associations: list[dict[str, Any]]) -> list[
            tuple[str, int]]:
        out = []
        for assoc in associations:
            to = str((assoc.get("to") or {}).get("id", ""))
            for spec in assoc.get("types") or []:
                type_id = spec.get("associationTypeId")
                to_type = next((t for (f, t), i in ASSOCIATION_TYPES.items()
                                if f == object_type and i == type_id), None)
                if spec.get("associationCategory") != "HUBSPOT_DEFINED" or to_type is None:
                    raise ApiError(400, "VALIDATION_ERROR",
                                   f"association type {type_id} is not valid from {object_type}")
                if to not in self.objects[to_type]:
                    raise ApiError(400, "VALIDATION_ERROR",
                                   f"the {to_type[:-1]} to associate does not exist",
                                   context={"id": [to]})
                out.append((to, int(type_id)))
        return out

    # --- records --------------------------------------------------------------------------

    def _calculated(self, props: dict[str, Any]) -> None:
        for source, target in (("phone", "hs_searchable_calculated_phone_number"),
                               ("mobilephone", "hs_searchable_calculated_mobile_number")):
            raw = props.get(source)
            props.pop(target, None)
            if not raw:
                continue
            # HubSpot reads the digits, whatever words surround them.
            digits = ("+" if raw.strip().startswith("+") else "") + re.sub(r"\D", "", raw)
            try:
                number = phonenumbers.parse(digits, self.region)
            except phonenumbers.NumberParseException:
                continue
            props[target] = str(number.national_number)  # area code and local number only

    def write(self, object_type: str, props: dict[str, Any], associations: list[tuple[str, int]],
              *, visible_now: bool = False, trace: str | None = None) -> str:
        oid = self.next_id()
        now = self.clock.now()
        stamp = iso(now)
        props = dict(props)
        created = "createdate" if object_type == "contacts" else "hs_createdate"
        modified = "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"
        props |= {created: stamp, modified: stamp, "hs_object_id": oid}
        if object_type == "contacts":
            self._calculated(props)
        visible = 0.0 if visible_now else now.timestamp() + self.search_delay
        self.objects[object_type][oid] = {
            "id": oid, "properties": props, "createdAt": stamp, "updatedAt": stamp,
            "archived": False, "versions": [(visible, dict(props))], "trace": trace}
        for to, type_id in associations:
            to_type = next(t for (f, t), i in ASSOCIATION_TYPES.items() if f == object_type
                           and i == type_id)
            self.associations.append((object_type, oid, to_type, to, type_id))
        return oid

    def update(self, object_type: str, oid: str, props: dict[str, Any]) -> None:
        record = self.objects[object_type][oid]
        now = self.clock.now()
        record["properties"] |= props
        modified = "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"
        record["properties"][modified] = record["updatedAt"] = iso(now)
        if object_type == "contacts":
            self._calculated(record["properties"])
        record["versions"].append((now.timestamp() + self.search_delay, dict(record["properties"])))

    def shape(self, object_type: str, record: dict[str, Any], names: list[str] | None,
              *, trace: bool = False) -> dict[str, Any]:
        default = {"hs_object_id", "createdate", "lastmodifieddate", "hs_createdate",
                   "hs_lastmodifieddate"}
        wanted = set(names or ()) | default
        props = {k: v for k, v in record["properties"].items() if k in wanted}
        for name in names or ():
            props.setdefault(name, None)
        out = {"id": record["id"], "properties": props, "createdAt": record["createdAt"],
               "updatedAt": record["updatedAt"], "archived": False}
        if trace and record.get("trace") is not None:
            out["objectWriteTraceId"] = record["trace"]
        return out

    def associated(self, object_type: str, oid: str) -> list[tuple[str, str, int]]:
        return [(t, to, i) for f, fid, t, to, i in self.associations if f == object_type and fid == oid]

    # --- search ---------------------------------------------------------------------------

    def search(self, object_type: str, body: dict[str, Any], raw_size: int) -> dict[str, Any]:
        if raw_size > MAX_BODY:
            raise ApiError(400, "VALIDATION_ERROR", f"the search body exceeds {MAX_BODY} characters")
        unknown = set(body) - {"filterGroups", "properties", "sorts", "limit", "after", "query"}
        if unknown:
            raise ApiError(400, "VALIDATION_ERROR", f"unknown fields: {', '.join(sorted(unknown))}")
        groups = body.get("filterGroups") or []
        if len(groups) > MAX_GROUPS:
            raise ApiError(400, "VALIDATION_ERROR", f"at most {MAX_GROUPS} filterGroups")
        total_filters = 0
        for group in groups:
            filters = group.get("filters") or []
            total_filters += len(filters)
            if len(filters) > MAX_FILTERS_PER_GROUP:
                raise ApiError(400, "VALIDATION_ERROR", f"at most {MAX_FILTERS_PER_GROUP} filters a group")
            for f in filters:
                if f.get("operator") not in OPERATORS or not f.get("propertyName"):
                    raise ApiError(400, "VALIDATION_ERROR", "a filter needs a propertyName and a known operator")
        if total_filters > MAX_FILTERS:
            raise ApiError(400, "VALIDATION_ERROR", f"at most {MAX_FILTERS} filters in all")
        limit = int(body.get("limit") or 10)
        after = int(body.get("after") or 0)
        if limit > MAX_LIMIT or limit < 1:
            raise ApiError(400, "VALIDATION_ERROR", f"limit must be between 1 and {MAX_LIMIT}")
        now = self.clock.now().timestamp()
        hits = []
        for record in self.objects[object_type].values():
            seen = [props for at, props in record["versions"] if at <= now]
            if not seen:
                continue  # not indexed yet
            props = seen[-1]
            if not groups or any(all(_matches(props, f) for f in g.get("filters") or [])
                                 for g in groups):
                hits.append({**record, "properties": props})
        for sort in reversed(body.get("sorts") or []):
            name = sort["propertyName"] if isinstance(sort, dict) else str(sort).lstrip("-")
            desc = (sort.get("direction") == "DESCENDING") if isinstance(sort, dict) \
                else str(sort).startswith("-")
            hits.sort(key=lambda r, n=name: _ms(r["properties"].get(n) or "") or 0.0,  # type: ignore[misc]
                      reverse=desc)
        if not body.get("sorts"):
            hits.sort(key=lambda r: int(r["id"]))
        if after + limit > MAX_RESULTS and after >= MAX_RESULTS:
            raise ApiError(400, "VALIDATION_ERROR", f"a search returns at most {MAX_RESULTS} results")
        page = hits[after:after + limit]
        out: dict[str, Any] = {"total": len(hits), "results": [
            self.shape(object_type, r, body.get("properties")) for r in page]}
        if after + limit < min(len(hits), MAX_RESULTS):
            out["paging"] = {"next": {"after": str(after + limit)}}
        return out


def _matches(props: dict[str, Any], f: dict[str, Any]) -> bool:
    op, value = f["operator"], props.get(f["propertyName"])
    if op == "HAS_PROPERTY":
        return value not in (None, "")
    if op == "NOT_HAS_PROPERTY":
        return value in (None, "")
    if value in (None, ""):
        return op in ("NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN")
    text = str(value)
    if op in ("IN", "NOT_IN"):
        inside = text.lower() in {str(v).lower() for v in f.get("values") or []}
        return inside if op == "IN" else not inside
    wanted = str(f.get("value", ""))
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        pattern = re.escape(wanted.lower()).replace(r"\*", ".*")
        found = any(re.fullmatch(pattern, token) for token in re.split(r"[\s,;]+", text.lower()))
        return found if op == "CONTAINS_TOKEN" else not found
    if op in ("EQ", "NEQ"):
        a, b = _ms(text), _ms(wanted)
        same = (a == b) if a is not None and b is not None and not text.isalpha() \
            else text.lower() == wanted.lower()
        return same if op == "EQ" else not same
    a, b = _ms(text), _ms(wanted)
    if a is None or b is None:
        return False
    if op == "BETWEEN":
        high = _ms(str(f.get("highValue", "")))
        return high is not None and b <= a <= high
    return {"LT": a < b, "LTE": a <= b, "GT": a > b, "GTE": a >= b}[op]


def seed(portal: Portal, data: dict[str, Any]) -> None:
    """Fill ``portal`` from a fixture (the shape of ``sandbox_seed.json``)."""
    info = data.get("portal") or {}
    portal.portal_id = int(info.get("portalId", portal.portal_id))
    portal.time_zone = str(info.get("timeZone", portal.time_zone))
    portal.tokens |= set(data.get("tokens") or [])
    for o in data.get("owners") or []:
        portal.add_owner(o["firstName"], o["lastName"], o["email"])
    for c in data.get("contacts") or []:
        portal.add_contact(c.get("firstname", ""), c.get("lastname", ""), c.get("phone"),
                           c.get("mobilephone"), c.get("email"), modified=c.get("lastmodifieddate"))


def load_seed(path: str | Path | None = None) -> dict[str, Any]:
    if path is None:
        path = os.environ.get(ENV_SEED)
    if path:
        return dict(json.loads(Path(path).read_text()))
    return dict(json.loads(resources.files("callbridge_hubspot").joinpath(
        "sandbox_seed.json").read_text()))
