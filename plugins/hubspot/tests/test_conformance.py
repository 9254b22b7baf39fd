"""Every recorded exchange read through HubSpot's own client models, and every property
the plugin sends checked against HubSpot's published definitions.

``hubspot-api-client`` (the plugin's ``test`` extra; never a run-time dependency) is
generated from HubSpot's OpenAPI documents. Each request body is read as the input
model of its endpoint and each answer as the output model of its status: a field the
model does not have fails, a required field missing fails (the models refuse None),
an enumerated field outside its values fails.

The property allow-list is ``callbridge_hubspot/properties.json``; its ``sources``
name the HubSpot pages each object's properties and values come from.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from importlib import import_module, resources
from pathlib import Path
from typing import Any

import pytest
import yaml

hubspot = pytest.importorskip("hubspot", reason="hubspot-api-client is the plugin's test extra")
from hubspot.crm.objects.configuration import Configuration  # noqa: E402

CASSETTES = Path(__file__).parent / "cassettes"
ALLOWED = json.loads(resources.files("callbridge_hubspot").joinpath("properties.json").read_text())
#: Where HubSpot's guide and its generated client disagree, with the reason we follow
#: the guide. Stale entries fail (see the last test).
KNOWN_DIFFERENCES = {
    "PublicObjectSearchRequest.sorts": "the search guide documents sort objects "
    "({propertyName, direction}); the generated model types them as strings",
    "Error.errorType+policyName": "a 429's body carries errorType and policyName (DAILY, "
    "TEN_SECONDLY_ROLLING) by HubSpot's usage guidelines; the Error model lists neither",
}
_used_differences: set[str] = set()

_OBJECTS = "hubspot.crm.objects.models"
_OWNERS = "hubspot.crm.owners.models"
_PROPERTIES = "hubspot.crm.properties.models"
_FILES = "hubspot.files.models"

#: (method, path pattern) -> (request model, {status: answer model}); None: no JSON body.
ENDPOINTS: list[tuple[str, str, str | None, dict[int, str]]] = [
    ("POST", r"/crm/v3/objects/\w+/search", f"{_OBJECTS}.PublicObjectSearchRequest",
     {200: f"{_OBJECTS}.CollectionResponseWithTotalSimplePublicObjectForwardPaging"}),
    ("POST", r"/crm/v3/objects/\w+/batch/create",
     f"{_OBJECTS}.BatchInputSimplePublicObjectBatchInputForCreate",
     {201: f"{_OBJECTS}.BatchResponseSimplePublicObject",
      207: f"{_OBJECTS}.BatchResponseSimplePublicObjectWithErrors", 400: f"{_OBJECTS}.Error"}),
    ("POST", r"/crm/v3/objects/\w+", f"{_OBJECTS}.SimplePublicObjectInputForCreate",
     {201: f"{_OBJECTS}.SimplePublicObject", 400: f"{_OBJECTS}.Error"}),
    ("GET", r"/crm/v3/objects/\w+/\d+", None,
     {200: f"{_OBJECTS}.SimplePublicObjectWithAssociations", 404: f"{_OBJECTS}.Error"}),
    ("PATCH", r"/crm/v3/objects/\w+/\d+", f"{_OBJECTS}.SimplePublicObjectInput",
     {200: f"{_OBJECTS}.SimplePublicObject"}),
    ("GET", r"/crm/v3/owners/?", None, {200: f"{_OWNERS}.CollectionResponsePublicOwnerForwardPaging"}),
    ("GET", r"/crm/v3/properties/\w+/\w+", None,
     {200: f"{_PROPERTIES}.ModelProperty", 404: f"{_PROPERTIES}.Error"}),
    ("POST", r"/crm/v3/properties/\w+", f"{_PROPERTIES}.PropertyCreate",
     {201: f"{_PROPERTIES}.ModelProperty"}),
    ("POST", r"/files/v3/files", None, {201: f"{_FILES}.File"}),
    ("GET", r"/files/v3/files/search", None, {200: f"{_FILES}.CollectionResponseFile"}),
]
#: Account details have no model in the client: the keys of HubSpot's reference page
#: (developers.hubspot.com, "Account information API", GET /account-info/v3/details).
ACCOUNT_KEYS = {"portalId", "timeZone", "accountType", "companyCurrency", "additionalCurrencies",
                "utcOffset", "utcOffsetMilliseconds", "uiDomain", "dataHostingLocation"}


def _strict() -> Any:
    """The client's configuration with its checks on (they are off by default)."""
    config = Configuration()
    config.client_side_validation = True
    return config


def _class(path: str) -> type:
    module, _, name = path.rpartition(".")
    cls: type = getattr(import_module(module), name)
    return cls


def read(cls: type, data: Any, where: str) -> Any:
    """``data`` as an instance of the client model ``cls``; AssertionError on a mismatch."""
    assert isinstance(data, dict), f"{where}: expected an object for {cls.__name__}"
    by_json = {v: k for k, v in cls.attribute_map.items()}  # type: ignore[attr-defined]
    unknown = set(data) - set(by_json)
    assert not unknown, f"{where}: {cls.__name__} has no field {sorted(unknown)}"
    kwargs = {}
    for key, value in data.items():
        attr = by_json[key]
        kwargs[attr] = _value(cls.openapi_types[attr], value, f"{where}.{key}",  # type: ignore[attr-defined]
                              cls.__module__, f"{cls.__name__}.{key}")
    try:
        return cls(**kwargs, local_vars_configuration=_strict())
    except ValueError as exc:
        raise AssertionError(f"{where}: {cls.__name__}: {exc}") from None


def _value(kind: str, value: Any, where: str, module: str, field: str) -> Any:
    if value is None:
        return None
    if field in KNOWN_DIFFERENCES and kind == "list[str]" and all(isinstance(v, dict) for v in value):
        _used_differences.add(field)
        return value
    if kind.startswith("list["):
        assert isinstance(value, list), f"{where}: expected a list"
        return [_value(kind[5:-1], v, f"{where}[{i}]", module, field) for i, v in enumerate(value)]
    if kind.startswith("dict["):
        assert isinstance(value, dict), f"{where}: expected an object"
        inner = kind[len("dict[str, "):-1]
        return {k: _value(inner, v, f"{where}.{k}", module, field) for k, v in value.items()}
    if kind == "str":
        assert isinstance(value, str), f"{where}: expected a string, got {type(value).__name__}"
        return value
    if kind == "int":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: expected an integer"
        return value
    if kind == "bool":
        assert isinstance(value, bool), f"{where}: expected a boolean"
        return value
    if kind == "datetime":
        assert isinstance(value, str), f"{where}: expected a date-time string"
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if kind == "object":
        return value
    package = module.rpartition(".")[0]
    return read(getattr(import_module(package), kind), value, where)


def exchanges() -> Iterator[tuple[str, int, dict[str, Any]]]:
    for path in sorted(CASSETTES.glob("*.yaml")):
        for n, item in enumerate(yaml.safe_load(path.read_text())["interactions"]):
            yield path.name, n, item


def _json(text: Any) -> Any:
    return json.loads(text) if isinstance(text, str) and text.strip().startswith(("{", "[")) else None


def _endpoint(method: str, path: str) -> tuple[str | None, dict[int, str]] | None:
    for m, pattern, request, answers in ENDPOINTS:
        if m == method and re.fullmatch(pattern, path):
            return request, answers
    return None


CASES = [pytest.param(name, n, item, id=f"{name}#{n}") for name, n, item in exchanges()]


@pytest.mark.parametrize(("name", "n", "item"), CASES)
def test_each_recorded_exchange_reads_as_hubspots_models(name: str, n: int, item: Any) -> None:
    request, response = item["request"], item["response"]
    path = request["uri"].split("api.hubapi.com", 1)[1].split("?", 1)[0]
    status = response["status"]["code"]
    answer = _json(response["body"]["string"])
    if path == "/account-info/v3/details":
        assert set(answer) <= ACCOUNT_KEYS and {"portalId", "timeZone"} <= set(answer)
        return
    found = _endpoint(request["method"], path)
    assert found is not None, f"{name}#{n}: {request['method']} {path} is an endpoint no test knows"
    request_model, answers = found
    if request_model is not None:
        read(_class(request_model), _json(request["body"]), f"{name}#{n} request")
    if status == 429:
        extra = {k: answer.pop(k) for k in ("errorType", "policyName") if k in answer}
        assert extra.get("policyName") in ("DAILY", "TEN_SECONDLY_ROLLING", "SECONDLY")
        _used_differences.add("Error.errorType+policyName")
        answers = {429: f"{_OBJECTS}.Error"}
    if status >= 400 and status not in answers:
        answers = {status: f"{_OBJECTS}.Error"}  # any endpoint's error answer
    assert status in answers, f"{name}#{n}: status {status} for {path} has no model here"
    read(_class(answers[status]), answer, f"{name}#{n} answer")


def _object_type(path: str) -> str | None:
    m = re.match(r"/crm/v3/objects/(\w+)", path)
    return m.group(1) if m else None


def _sent_properties(item: Any) -> Iterator[tuple[str, str, Any]]:
    """(object type, property name, value) of every property a request writes or reads."""
    request = item["request"]
    path = request["uri"].split("api.hubapi.com", 1)[1].split("?", 1)[0]
    object_type = _object_type(path)
    body = _json(request["body"])
    if object_type is None or not isinstance(body, dict):
        return
    inputs = body.get("inputs") or [body]
    for one in inputs:
        for name, value in (one.get("properties") or {}).items() if isinstance(
                one.get("properties"), dict) else ():
            yield object_type, name, value
    for name in body.get("properties") or [] if path.endswith("/search") else []:
        yield object_type, name, None
    for group in body.get("filterGroups") or []:
        for f in group.get("filters") or []:
            yield object_type, f["propertyName"], None


def test_every_property_sent_is_published_by_hubspot_with_its_values() -> None:
    custom = ALLOWED["created_by_the_plugin"]
    seen = 0
    for name, n, item in exchanges():
        for object_type, prop, value in _sent_properties(item):
            seen += 1
            spec = ALLOWED["objects"].get(object_type, {}).get(prop)
            if spec is None:
                assert prop in custom and object_type in custom[prop]["objects"], (
                    f"{name}#{n}: {object_type}.{prop} is not a published HubSpot property")
                continue
            if value is not None:
                assert not spec.get("read_only"), f"{name}#{n}: {prop} is read-only"
                if spec.get("options"):
                    assert value in spec["options"], (
                        f"{name}#{n}: {object_type}.{prop} = {value!r} is not a published value")
    assert seen > 50


def test_the_marker_property_is_created_as_the_allow_list_says() -> None:
    custom = ALLOWED["created_by_the_plugin"]["callbridge_event"]
    created = [_json(item["request"]["body"]) for _, _, item in exchanges()
               if item["request"]["method"] == "POST"
               and re.search(r"/crm/v3/properties/\w+$", item["request"]["uri"])]
    assert created
    for body in created:
        assert (body["name"], body["type"], body["fieldType"]) == (
            "callbridge_event", custom["type"], custom["fieldType"])
        assert "hasUniqueValue" not in body  # HubSpot has no unique values on activities


def test_the_known_differences_are_still_used() -> None:
    for name, n, item in exchanges():
        try:
            test_each_recorded_exchange_reads_as_hubspots_models(name, n, item)
        except AssertionError:
            pass
    stale = set(KNOWN_DIFFERENCES) - _used_differences
    assert not stale, f"KNOWN_DIFFERENCES entries no exchange needs: {sorted(stale)}"


def test_a_field_hubspot_does_not_have_fails() -> None:
    cls = _class(f"{_OBJECTS}.SimplePublicObjectInputForCreate")
    with pytest.raises(AssertionError, match="has no field"):
        read(cls, {"properties": {}, "idempotencyKey": "x"}, "probe")
    with pytest.raises(AssertionError, match="must not be `None`"):
        read(_class(f"{_OBJECTS}.SimplePublicObject"), {"id": "1", "properties": {}}, "probe")
    with pytest.raises(AssertionError, match="must be one of"):
        read(_class(f"{_OBJECTS}.AssociationSpec"),
             {"associationCategory": "MADE_UP", "associationTypeId": 194}, "probe")
