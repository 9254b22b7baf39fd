"""The sandbox's documents and folders, and the pre-signed storage the uploads go to.

Folders are as in Clio: the account has one root folder; each matter and each contact
has a folder of its own (``folder{id}`` on the matter or contact) inside it; a folder's
parent is always a folder. Creating a folder or a document "in" a matter or a contact
files it in that one's folder.

The storage behaves as S3 does with a pre-signed URL: its own origin, the URL's
signature covering the ``put_headers`` (a PUT without them, or with other values, is
403 SignatureDoesNotMatch), the URL valid for ``put_url_lifetime`` seconds (10
minutes) from when it was handed out, and any Authorization header refused.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from callbridge_clio.sandbox.common import (
    Refused,
    body,
    by_property,
    enum,
    error,
    ids_filter,
    one,
    page,
)
from callbridge_clio.sandbox.fields import DOCUMENT_PARENT_TYPES, text_matches
from callbridge_clio.sandbox.state import SandboxState

API = "/api/v4"


def _s3_error(status: int, code: str, message: str) -> Response:
    return Response(f"<Error><Code>{code}</Code><Message>{message}</Message></Error>",
                    status_code=status, media_type="application/xml")


def routes(st: SandboxState, api: Any) -> list[Route]:

    def folder_of(parent: dict[str, Any]) -> int:
        """The folder a ``parent{id,type}`` of a create names (422 when there is none)."""
        kind, pid = parent.get("type"), parent.get("id")
        table = {"Matter": st.matters, "Contact": st.contacts, "Folder": None}
        if kind not in table or not isinstance(pid, int):
            raise Refused(422, "UnprocessableEntity", "parent must be {id, type} of a Folder, "
                                                      "a Matter or a Contact")
        owners = table[kind]
        if owners is None:
            if pid not in st.folders:
                raise Refused(422, "UnprocessableEntity", "parent folder not found")
            return pid
        if pid not in owners:
            raise Refused(422, "UnprocessableEntity", f"parent {kind.lower()} not found")
        return int(owners[pid]["folder"]["id"])

    def read_back(document: dict[str, Any]) -> dict[str, Any]:
        """A document as a read answers it (without its put_url, when told so)."""
        if not st.put_url_on_create_only:
            return document
        version = {k: v for k, v in document["latest_document_version"].items() if k != "put_url"}
        return {**document, "latest_document_version": version}

    async def documents(request: Request) -> Response:
        if request.method == "POST":
            data = await body(request)
            parent = data.get("parent") or {}
            enum(parent.get("type"), DOCUMENT_PARENT_TYPES, "parent.type", status=422)
            if parent.get("type") == "Document":
                return error(422, "UnprocessableEntity", "new versions are not supported here")
            if not data.get("name"):
                return error(422, "UnprocessableEntity", "name is required")
            folder = folder_of(parent)
            did, uuid = st.next_id(), secrets.token_hex(16)
            content_type = data.get("content_type", "application/pdf")
            st.documents[did] = {
                "id": did, "etag": f'"{did}-1"', "type": "Document", "name": data["name"],
                "filename": data.get("filename") or data["name"],
                "parent": {"id": folder, "type": "Folder"},
                "matter": st.folders[folder]["matter"], "contact": st.folders[folder]["contact"],
                "communication_id": data.get("communication_id"),
                "external_properties": data.get("external_properties", []),
                "content_type": content_type, "received_at": data.get("received_at"),
                "created_at": st.now(), "updated_at": st.now(), "locked": False,
                "latest_document_version": {
                    "uuid": uuid, "fully_uploaded": False, "put_url": st.put_url(uuid, content_type),
                    "put_headers": [{"name": "Content-Type", "value": content_type},
                                    {"name": "x-amz-server-side-encryption", "value": "AES256"}],
                    "content_type": content_type, "version_number": 1}}
            return one(request, st.documents[did], "document", 201)
        q = request.query_params
        items = by_property(list(st.documents.values()), request)
        if q.get("show_uncompleted") != "true":
            items = [d for d in items if d["latest_document_version"]["fully_uploaded"]]
        if "parent_id" in q:
            items = [d for d in items if str(d["parent"]["id"]) == q["parent_id"]]
        return page(st, request, [read_back(d) for d in items], "document")

    async def document(request: Request) -> Response:
        record = st.documents[int(request.path_params["id"])]
        if request.method == "PATCH":
            data = await body(request)
            version = record["latest_document_version"]
            if data.get("fully_uploaded"):
                if version["fully_uploaded"]:
                    # Marking is not idempotent in Clio: a second mark is refused.
                    return error(422, "UnprocessableEntity",
                                 "The document version has already been uploaded.")
                if data.get("uuid") != version["uuid"] or version["uuid"] not in st.storage:
                    return error(422, "UploadNotFoundError", "A matching remote file was not found.")
                if st.upload_timeouts > 0:
                    st.upload_timeouts -= 1
                    return error(422, "UploadTimeoutError", "A timeout occurred verifying the "
                                                            "remote file. Please try the request again.")
                version.update(fully_uploaded=True, put_url=None, put_headers=[],
                               size=len(st.storage[version["uuid"]]))
                record["updated_at"] = st.now()
            return one(request, record, "document")
        return one(request, read_back(record), "document")

    async def folders(request: Request) -> Response:
        if request.method == "POST":
            data = await body(request)
            if not data.get("name"):
                return error(422, "UnprocessableEntity", "name is required")
            fid = st.add_folder(data["name"], folder_of(data.get("parent") or {}))
            return one(request, st.folders[fid], "folder", 201)
        q = request.query_params
        items = ids_filter(list(st.folders.values()), request)
        if "parent_id" in q:
            items = [f for f in items if str((f.get("parent") or {}).get("id")) == q["parent_id"]]
        for key in ("matter", "contact"):  # every folder of a matter or a contact
            if f"{key}_id" in q:
                items = [f for f in items if str((f[key] or {}).get("id")) == q[f"{key}_id"]]
        if "query" in q:
            items = [f for f in items if text_matches(q["query"], f["name"], "substring")]
        return page(st, request, items, "folder")

    return [
        Route(f"{API}/documents.json", api(documents), methods=["GET", "POST"]),
        Route(f"{API}/documents/{{id:int}}.json", api(document), methods=["GET", "PATCH"]),
        Route(f"{API}/folders.json", api(folders), methods=["GET", "POST"]),
    ]


def storage_routes(st: SandboxState) -> list[Route]:
    """The storage origin: ``PUT /{key}`` with a pre-signed query."""

    async def put(request: Request) -> Response:
        key = request.path_params["key"]
        q = request.query_params
        st.storage_requests.append({"headers": dict(request.headers), "query": dict(q)})
        if st.storage_down:
            return _s3_error(503, "ServiceUnavailable", "Please reduce your request rate.")
        if "authorization" in request.headers:
            return _s3_error(400, "InvalidArgument", "Only one auth mechanism allowed")
        document = next((d for d in st.documents.values()
                         if d["latest_document_version"]["uuid"] == key), None)
        if document is None:
            return _s3_error(403, "AccessDenied", "Access Denied")
        content_type = document["content_type"]
        issued = q.get("X-Amz-Date", "")
        if not hmac.compare_digest(q.get("X-Amz-Signature", ""), st.sign(key, issued, content_type)):
            return _s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated "
                                                           "does not match the signature you provided.")
        start = datetime.strptime(issued, "%Y%m%dT%H%M%SZ").replace(tzinfo=st.clock.now().tzinfo)
        if st.clock.now() > start + timedelta(seconds=int(q.get("X-Amz-Expires", "0"))):
            return _s3_error(403, "AccessDenied", "Request has expired")
        if (request.headers.get("content-type") != content_type
                or request.headers.get("x-amz-server-side-encryption") != "AES256"):
            return _s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated "
                                                           "does not match the signature you provided.")
        st.storage[key] = await request.body()
        return Response(status_code=200)

    return [Route("/{key}", put, methods=["PUT"])]
