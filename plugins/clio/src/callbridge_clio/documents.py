"""Faxes: the communication, and the fax document uploaded through Clio's three steps.

1. create the document (``POST /documents.json``) in the fax folder of the matter, else
   of the contact: the folder named by the ``fax_folder`` option inside the matter's or
   contact's own folder (``folder{id}`` on it; in Clio a folder's parent is a folder);
2. ``PUT`` the bytes to the pre-signed ``put_url`` with exactly its ``put_headers``, on
   the bare client (no credentials of ours reach the storage);
3. mark it uploaded. Clio refuses a second mark, so after an error the document is read
   again and ``fully_uploaded: true`` counts as done; ``UploadTimeoutError`` (Clio's
   verification timing out) is retried.

A failed upload is retried by the host up to ``UPLOAD_ATTEMPTS``, then the log is kept
without its document; a full rate-limit window or refused credentials met meanwhile are
the host's waits, and spend none of those attempts.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from callbridge.context import HookContext, find_record
from callbridge.errors import AppError, AuthenticationFailed, RateLimited, TransientError
from callbridge.events import FaxEvent
from callbridge.models import LogResult, LogTarget, Record

from callbridge_clio.api import MARKER, ClioApi, ClioDocument
from callbridge_clio.compat import step
from callbridge_clio.records import communication
from callbridge_clio.rendering import body
from callbridge_clio.settings import UPLOAD_ATTEMPTS, options


class _Nowhere(Exception):
    """The fax has no contact or matter to be filed under."""


def missing_document(records: tuple[Record, ...]) -> LogResult:
    """A log kept without its fax document (the outcome's reason: ``document_missing``)."""
    return LogResult(records=records, missing=("document",))


async def document_bytes(ctx: HookContext, event: FaxEvent) -> bytes:
    """The fax's bytes: fetched by the host (``ctx.documents``) under its address policy;
    the plugin never fetches an event's URL itself."""
    assert event.document is not None
    if ctx.documents is not None:
        return bytes((await ctx.documents.fetch(event.document)).content)
    if event.document.content is not None:
        return bytes(event.document.content)
    raise TransientError("the fax document is a link and this host fetches no documents")


async def document_parent(ctx: HookContext, target: LogTarget) -> dict[str, Any] | None:
    """Where the fax document goes: the fax folder of the matter, else of the contact."""
    if target.matter is not None:
        parent_id, parent_type = int(target.matter.id), "Matter"
    elif target.contacts:
        parent_id, parent_type = int(target.contacts[0].id), "Contact"
    else:
        return None
    folder_name = options(ctx).fax_folder
    if not folder_name:
        return {"id": parent_id, "type": parent_type}
    api = ClioApi(ctx.http)
    async with ctx.lock(f"folder:{parent_type}:{parent_id}"):  # one folder, however many faxes
        root = await api.root_folder(parent_type, parent_id)
        folder = await api.folder_named(folder_name, parent_folder=root)
        if folder is None:
            folder = await api.create_folder(folder_name, parent_folder=root)
    return {"id": folder.id, "type": "Folder"}


def error_type(exc: AppError) -> str | None:
    """Clio's error type named in the host's error message (e.g. ``UploadTimeoutError``)."""
    for kind in ("UploadTimeoutError", "UploadNotFoundError"):
        if kind in str(exc):
            return kind
    return None


async def mark_uploaded(api: ClioApi, doc: ClioDocument, uuid: str) -> None:
    try:
        await api.mark_uploaded(doc.id, uuid)
    except AppError as exc:
        if error_type(exc) == "UploadTimeoutError":
            raise TransientError("Clio timed out verifying the fax upload; will retry") from exc
        # Marking is not idempotent: an earlier mark may have landed unseen.
        again = (await api.document(doc.id)).latest_document_version
        if again is None or not again.fully_uploaded:
            raise


async def upload(ctx: HookContext, event: FaxEvent, target: LogTarget,
                 comm: Record) -> Record | None:
    """The fax document, created, uploaded and marked complete; None when it has nowhere to go."""
    done = find_record(ctx.delivery.records if ctx.delivery else (), "document", "document_uploaded")
    if done is not None:
        return done
    api = ClioApi(ctx.http)
    created: list[ClioDocument] = []

    async def find() -> str | None:
        found = await api.documents_marked(event.marker)  # unfinished ones too
        return str(found[0].id) if found else None

    async def create() -> str:
        parent = await document_parent(ctx, target)
        if parent is None:
            raise _Nowhere
        assert event.document is not None
        name = event.document.filename or (
            f"Fax {event.direction.value} {event.sent_at.astimezone(UTC):%Y-%m-%d %H%M}"
            f"{'.pdf' if event.document.content_type == 'application/pdf' else '.tiff'}")
        doc = await api.create_document({
            "name": name, "parent": parent, "communication_id": int(comm.id),
            "content_type": event.document.content_type, "received_at": event.sent_at.isoformat(),
            "external_properties": [{"name": MARKER, "value": event.marker}]})
        created.append(doc)
        return str(doc.id)

    try:
        record = await step(ctx, "document", "document", create=create, find=find)
    except _Nowhere:
        return None
    doc = created[0] if created else await api.document(int(record.id))
    version = doc.latest_document_version
    if version is None or (not version.fully_uploaded and not version.put_url):
        # Nowhere to put the bytes: a failed upload, never a document marked as done.
        raise TransientError("Clio gave the fax document no upload URL")
    if not version.fully_uploaded:
        assert version.put_url
        # A bare client: the storage URL is pre-signed, and our token or headers
        # must never reach it.
        await ctx.bare_http.put(version.put_url, content=await document_bytes(ctx, event),
                                headers={h.name: h.value for h in version.put_headers})
        await mark_uploaded(api, doc, version.uuid)

    async def uploaded() -> str:
        return str(doc.id)

    return await step(ctx, "document", "document_uploaded", create=uploaded)


async def log_fax(ctx: HookContext, event: FaxEvent, target: LogTarget) -> LogResult:
    comm = await communication(ctx, event, target)
    if event.document is None:
        return missing_document((comm,))
    try:
        doc = await upload(ctx, event, target, comm)
    except (RateLimited, AuthenticationFailed):
        # The host's waits (room in a full window, new credentials), not a failed upload:
        # the delivery waits without spending an upload attempt, and the document is filed.
        raise
    except (AppError, OSError) as exc:
        attempt = ctx.delivery.attempt if ctx.delivery else UPLOAD_ATTEMPTS
        if attempt < UPLOAD_ATTEMPTS and (not isinstance(exc, AppError) or exc.retryable):
            raise TransientError(f"fax upload failed ({type(exc).__name__}); will retry") from exc
        doc = None
    if doc is None:
        why = ("no contact or matter to file it under" if not (target.contacts or target.matter)
               else "the upload failed")
        await ClioApi(ctx.http).update_communication(int(comm.id), {
            "body": body(event, target, note=f"The fax document is missing: {why}.")})
        return missing_document((comm,))
    return LogResult(records=(comm, doc))
