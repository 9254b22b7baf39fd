"""The sandbox's contacts, matters, relationships, users, custom fields, communications
and activities endpoints."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from callbridge_clio.sandbox.common import (
    Handler,
    body,
    by_property,
    enum,
    error,
    ids_filter,
    one,
    page,
    since,
)
from callbridge_clio.sandbox.fields import (
    ACTIVITY_TYPES,
    COMMUNICATION_TYPES,
    CONTACT_TYPES,
    MATTER_STATUSES,
    PARTICIPANT_TYPES,
    text_matches,
)
from callbridge_clio.sandbox.state import SandboxState

API = "/api/v4"


def routes(st: SandboxState, api: Any) -> list[Route]:
    """The routes, each handler wrapped by ``api`` (auth, version, rate limit)."""

    def found_by_query(contact: dict[str, Any], query: str) -> bool:
        texts = [contact["name"], contact.get("first_name"), contact.get("last_name"),
                 *(p["number"] for p in contact["phone_numbers"]),
                 *(e["address"] for e in contact["email_addresses"])]
        return any(text_matches(query, t, st.search_mode) for t in texts)

    async def contacts(request: Request) -> Response:
        if request.method == "POST":
            data = await body(request)
            enum(data.get("type"), CONTACT_TYPES, "type", status=422)
            if data.get("type") is None:
                return error(422, "UnprocessableEntity", "type is required")
            if data["type"] == "Person" and not (data.get("first_name") or data.get("last_name")):
                return error(422, "UnprocessableEntity", "A Person needs a first or last name.")
            cid = st.add_contact(data.get("first_name") or "", data.get("last_name") or "",
                                 [p["number"] for p in data.get("phone_numbers", [])],
                                 [e["address"] for e in data.get("email_addresses", [])])
            return one(request, st.contacts[cid], "contact", 201)
        q = request.query_params
        enum(q.get("type"), CONTACT_TYPES, "type")
        items = list(st.contacts.values())
        if "query" in q:
            items = [c for c in items if found_by_query(c, q["query"])]
        if "type" in q:
            items = [c for c in items if c["type"] == q["type"]]
        items = ids_filter(items, request)
        items = since(items, request, "updated_since", "updated_at")
        items = since(items, request, "created_since", "created_at")
        return page(st, request, items, "contact")

    async def contact(request: Request) -> Response:
        return one(request, st.contacts[int(request.path_params["id"])], "contact")

    async def matters(request: Request) -> Response:
        q = request.query_params
        items = list(st.matters.values())
        if "client_id" in q:
            items = [m for m in items if str(m["client"]["id"]) == q["client_id"]]
        if "status" in q:
            wanted = {s.strip() for s in q["status"].split(",")}
            for status in wanted:
                enum(status, MATTER_STATUSES, "status")
            items = [m for m in items if m["status"].lower() in wanted]
        items = ids_filter(items, request)
        items = since(items, request, "updated_since", "updated_at")
        return page(st, request, items, "matter")

    async def matter(request: Request) -> Response:
        return one(request, st.matters[int(request.path_params["id"])], "matter")

    async def relationships(request: Request) -> Response:
        q = request.query_params
        items = list(st.relationships.values())
        if "contact_id" in q:
            items = [r for r in items if str(r["contact"]["id"]) == q["contact_id"]]
        if "matter_id" in q:
            items = [r for r in items if str(r["matter"]["id"]) == q["matter_id"]]
        items = ids_filter(items, request)
        items = since(items, request, "updated_since", "updated_at")
        for r in items:  # the nested matter's status as it stands now
            r["matter"]["status"] = st.matters[r["matter"]["id"]]["status"]
        return page(st, request, items, "relationship", orderable=False)

    async def users(request: Request) -> Response:
        q = request.query_params
        items = list(st.users.values())
        if "enabled" in q:  # without the filter Clio answers disabled users too
            wanted = q["enabled"].lower() == "true"
            items = [u for u in items if u["enabled"] is wanted]
        items = ids_filter(items, request)
        return page(st, request, items, "user")

    async def who_am_i(request: Request) -> Response:
        return one(request, st.users[st.authorised_user or 0], "user")

    async def communications(request: Request) -> Response:
        if request.method == "POST":
            data = await body(request)
            for need in ("type", "subject", "body", "received_at"):
                if not data.get(need):
                    return error(422, "UnprocessableEntity", f"{need} is required")
            enum(data["type"], COMMUNICATION_TYPES, "type", status=422)
            for side in ("senders", "receivers"):
                for p in data.get(side, []):
                    enum(p.get("type"), PARTICIPANT_TYPES, f"{side}.type", status=422)
            if len(data.get("external_properties", [])) > 5:
                return error(422, "UnprocessableEntity", "at most 5 external properties")
            cid = st.next_id()
            st.communications[cid] = {
                "id": cid, "etag": f'"{cid}-1"', "type": data["type"], "subject": data["subject"],
                "body": data["body"], "received_at": data["received_at"],
                "date": data["received_at"][:10], "matter": data.get("matter"),
                "senders": data.get("senders", []), "receivers": data.get("receivers", []),
                "external_properties": data.get("external_properties", []),
                "user": {"id": st.authorised_user}, "created_at": st.now(),
                "updated_at": st.now(), "time_entries_count": 0}
            return one(request, st.communications[cid], "communication", 201)
        q = request.query_params
        enum(q.get("type"), COMMUNICATION_TYPES, "type")
        items = by_property(list(st.communications.values()), request)
        if "matter_id" in q:
            items = [c for c in items if (c.get("matter") or {}).get("id") == int(q["matter_id"])]
        return page(st, request, ids_filter(items, request), "communication")

    async def communication(request: Request) -> Response:
        record = st.communications[int(request.path_params["id"])]
        if request.method == "PATCH":
            data = await body(request)
            if "type" in data:
                enum(data["type"], COMMUNICATION_TYPES, "type", status=422)
            changes = {k: data[k] for k in ("subject", "body", "matter", "external_properties")
                       if k in data}
            st.touch(st.communications, record["id"], **changes)
        return one(request, record, "communication")

    async def activities(request: Request) -> Response:
        if request.method == "POST":
            data = await body(request)
            enum(data.get("type"), ACTIVITY_TYPES, "type", status=422)
            if not data.get("type") or not data.get("date"):
                return error(422, "UnprocessableEntity", "type and date are required")
            described = (data.get("activity_description") or {}).get("id")
            if described is not None and described not in st.activity_descriptions:
                return error(422, "UnprocessableEntity", "activity_description is invalid")
            aid = st.next_id()
            st.activities[aid] = {
                "id": aid, "etag": f'"{aid}-1"', "type": data["type"], "date": data["date"],
                "quantity": data.get("quantity"), "communication": data.get("communication"),
                "matter": data.get("matter"), "user": data.get("user") or {"id": st.authorised_user},
                "non_billable": data.get("non_billable", False), "note": data.get("note"),
                "activity_description": data.get("activity_description"),
                "created_at": st.now(), "updated_at": st.now()}
            comm = (data.get("communication") or {}).get("id")
            if comm in st.communications:
                st.communications[comm]["time_entries_count"] += 1
            return one(request, st.activities[aid], "activity", 201)
        q = request.query_params
        enum(q.get("type"), ACTIVITY_TYPES, "type")
        items = list(st.activities.values())
        if "communication_id" in q:
            items = [a for a in items
                     if (a.get("communication") or {}).get("id") == int(q["communication_id"])]
        return page(st, request, ids_filter(items, request), "activity")

    async def activity_descriptions(request: Request) -> Response:
        if request.method == "POST":
            data = await body(request)
            if not data.get("name"):
                return error(422, "UnprocessableEntity", "name is required")
            aid = st.add_activity_description(data["name"])
            return one(request, st.activity_descriptions[aid], "activity_description", 201)
        items = ids_filter(list(st.activity_descriptions.values()), request)
        return page(st, request, items, "activity_description", orderable=False)

    async def custom_fields(request: Request) -> Response:
        q = request.query_params
        items = list(st.custom_fields.values())
        if "parent_type" in q:
            enum(q["parent_type"], frozenset({"matter", "contact"}), "parent_type")
            items = [f for f in items if f["parent_type"].lower() == q["parent_type"]]
        if "field_type" in q:
            items = [f for f in items if f["field_type"] == q["field_type"]]
        return page(st, request, ids_filter(items, request), "custom_field")

    table: list[tuple[str, Handler, list[str]]] = [
        ("/contacts.json", contacts, ["GET", "POST"]),
        ("/contacts/{id:int}.json", contact, ["GET"]),
        ("/matters.json", matters, ["GET"]),
        ("/matters/{id:int}.json", matter, ["GET"]),
        ("/relationships.json", relationships, ["GET"]),
        ("/users.json", users, ["GET"]),
        ("/users/who_am_i.json", who_am_i, ["GET"]),
        ("/communications.json", communications, ["GET", "POST"]),
        ("/communications/{id:int}.json", communication, ["GET", "PATCH"]),
        ("/activities.json", activities, ["GET", "POST"]),
        ("/activity_descriptions.json", activity_descriptions, ["GET", "POST"]),
        ("/custom_fields.json", custom_fields, ["GET"]),
    ]
    return [Route(f"{API}{path}", api(handler), methods=methods) for path, handler, methods in table]
