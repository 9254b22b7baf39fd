"""The writes: a Fee or a Task for a call, a Memo or a Task for an SMS, a Document for a fax.

Every create is answered 202 with the record's id and the outcome is *accepted*;
nothing is read back as a condition of success (:func:`confirm_accepted` checks
later). Record ids of records that live under a matter are ``matterId/recordId``.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from callbridge.context import HookContext, find_record
from callbridge.errors import (
    AppError,
    AuthenticationFailed,
    PermanentError,
    RateLimited,
    SkipEvent,
    TransientError,
)

try:
    from callbridge.errors import UnknownActivityCode
except ImportError:  # pragma: no cover - a host before hook API 2.0
    class UnknownActivityCode(PermanentError):  # type: ignore[no-redef]
        """Stands in for the host's error on hosts that do not have it."""
from callbridge.events import CallEvent, CallOutcome, Direction, FaxEvent, SmsEvent
from callbridge.models import AppUser, LogResult, LogStatus, LogTarget, Record

from callbridge_smokeball import host, lookups, render
from callbridge_smokeball.api import FILE_MARKER_KEY, SmokeballApi
from callbridge_smokeball.render import AnyEvent

#: Uploads retried by the host this many attempts before the log is kept without its file.
UPLOAD_ATTEMPTS = 3
#: Whether this host's LogResult has ``missing`` (hook API 2.0) or the older ``note``.
_HAS_MISSING = "missing" in LogResult.model_fields


def accepted(*records: Record, missing: tuple[str, ...] = ()) -> LogResult:
    if missing and _HAS_MISSING:
        return LogResult(records=records, status=LogStatus.ACCEPTED, missing=missing)
    if missing:
        return LogResult(records=records, status=LogStatus.ACCEPTED,
                         note=f"{' and '.join(missing)} missing")
    return LogResult(records=records, status=LogStatus.ACCEPTED)


def split(record_id: str) -> tuple[str, str]:
    """``matterId/recordId`` -> (matterId, recordId)."""
    matter_id, _, own = record_id.partition("/")
    return matter_id, own


async def _user(ctx: HookContext, target: LogTarget) -> AppUser:
    """The staff member a write names: the host's choice, else the default user."""
    user = target.user or await lookups.pick_default_user(ctx)
    if user is None:
        raise SkipEvent("no_user", "The Smokeball firm has no enabled staff member to assign.")
    return user


# --- call ---------------------------------------------------------------------------------


async def _fee(ctx: HookContext, event: CallEvent, target: LogTarget, mark: str) -> Record:
    assert target.matter is not None
    api = SmokeballApi(ctx.http)
    opts = lookups.options(ctx)
    matter_id = target.matter.id
    user = await _user(ctx, target)
    code = await lookups.activity_code(ctx, getattr(target, "activity_code", None))
    billable = opts.fee_billable if opts.fee_billable is not None else ctx.settings.default_billable
    body = {
        "feeType": 1, "feeDate": render.local_date(event, ctx.tenant.time_zone).isoformat(),
        "subject": render.subject(event, target), "description": render.text(event, target, mark),
        "activityCode": code, "staffId": user.id,
        "duration": render.billed_minutes(event, opts.billing_unit_minutes),
        "durationWorked": render.worked_minutes(event), "isBillable": billable,
    }

    async def create() -> str:
        try:
            link = await api.create(f"/matters/{matter_id}/fees", body,
                                    request_id=host.request_id(ctx, mark, "fee"))
        except PermanentError as exc:
            if "activitycode" not in str(exc).lower().replace(" ", ""):
                raise
            # The firm deleted or renamed the code: ensure it again, then this log once more.
            await lookups.forget_activity_code(ctx, lookups.code_label(ctx))
            raise UnknownActivityCode("Smokeball no longer knows the activity code") from exc
        return f"{matter_id}/{link.id}"

    async def find() -> str | None:
        for fee in await api.fees_updated_since(matter_id, host.since_first_attempt(ctx)):
            if render.carries(fee.description, mark):
                return f"{matter_id}/{fee.id}"
        return None

    return await host.step(ctx, "fee", "fee", create=create, find=find)


def _open_task(event: AnyEvent) -> bool:
    """A task stays open (a follow-up) for an inbound call that was missed or went to voicemail."""
    return (isinstance(event, CallEvent) and event.direction == Direction.INBOUND
            and event.outcome in (CallOutcome.MISSED, CallOutcome.VOICEMAIL))


async def _task(ctx: HookContext, event: AnyEvent, target: LogTarget, mark: str) -> Record:
    api = SmokeballApi(ctx.http)
    user = await _user(ctx, target)
    day = render.local_date(event, ctx.tenant.time_zone).isoformat()
    done = not _open_task(event)
    body: dict[str, Any] = {
        "staffId": user.id, "assigneeIds": [user.id], "subject": render.subject(event, target),
        "note": render.text(event, target, mark), "isCompleted": done, "dueDateOnly": day,
    }
    if done:
        body["completedDateOnly"] = day
    if isinstance(event, CallEvent):
        body["duration"] = render.iso_duration(render.talk_seconds(event))

    async def create() -> str:
        link = await api.create("/tasks", body, request_id=host.request_id(ctx, mark, "task"))
        assert link.id is not None
        return link.id

    async def find() -> str | None:
        for task in await api.tasks_updated_since(host.since_first_attempt(ctx)):
            if render.carries(task.note, mark):
                return task.id
        return None

    return await host.step(ctx, "task", "task", create=create, find=find)


async def log_call(ctx: HookContext, event: CallEvent, target: LogTarget) -> LogResult:
    mark = host.marker(ctx, event) or event.marker
    if target.matter is not None:
        return accepted(await _fee(ctx, event, target, mark))
    return accepted(await _task(ctx, event, target, mark))


# --- sms ------------------------------------------------------------------------------------


async def _memo(ctx: HookContext, event: SmsEvent, target: LogTarget, mark: str) -> Record:
    assert target.matter is not None
    api = SmokeballApi(ctx.http)
    matter_id = target.matter.id
    body = {"title": render.subject(event, target), "text": render.text(event, target, mark),
            "createdDateUtc": event.sent_at.astimezone(UTC).isoformat()}

    async def create() -> str:
        link = await api.create(f"/matters/{matter_id}/memos", body,
                                request_id=host.request_id(ctx, mark, "memo"))
        return f"{matter_id}/{link.id}"

    async def find() -> str | None:
        # Memos are listed per matter without a time filter: the whole list is read.
        for memo in await api.memos(matter_id):
            if render.carries(memo.plain_text or memo.text, mark):
                return f"{matter_id}/{memo.id}"
        return None

    return await host.step(ctx, "memo", "memo", create=create, find=find)


async def log_sms(ctx: HookContext, event: SmsEvent, target: LogTarget) -> LogResult:
    mark = host.marker(ctx, event) or event.marker
    if target.matter is not None:
        return accepted(await _memo(ctx, event, target, mark))
    return accepted(await _task(ctx, event, target, mark))


# --- fax --------------------------------------------------------------------------------------


def file_name(event: FaxEvent) -> str:
    assert event.document is not None
    if event.document.filename:
        return event.document.filename[:256]
    ext = ".pdf" if event.document.content_type == "application/pdf" else ".tiff"
    return f"Fax {event.direction.value} {event.sent_at.astimezone(UTC):%Y-%m-%d %H%M}{ext}"


async def _document_bytes(ctx: HookContext, event: FaxEvent) -> bytes:
    """The fax's bytes: through the host's ``ctx.documents`` where it exists (it applies the
    outbound address policy to URLs); else only inline content is used."""
    assert event.document is not None
    documents = getattr(ctx, "documents", None)
    if documents is not None:
        doc = await documents.fetch(event.document)
        return bytes(doc.content)
    content = event.document.content
    if content is None:
        raise TransientError("the fax document has no inline content and this host "
                             "fetches no document URLs")
    return base64.b64decode(content) if isinstance(content, str) else bytes(content)


async def _upload(ctx: HookContext, event: FaxEvent, target: LogTarget, mark: str
                  ) -> tuple[Record, Record | None]:
    assert target.matter is not None and event.document is not None
    api = SmokeballApi(ctx.http)
    matter_id = target.matter.id
    opts = lookups.options(ctx)
    upload: dict[str, str] = {}
    body: dict[str, Any] = {"fileName": file_name(event),
                            "fileAdditionalData": {FILE_MARKER_KEY: mark},
                            "dateCreated": event.sent_at.astimezone(UTC).isoformat()}
    if opts.fax_folder:
        body["folderPath"] = opts.fax_folder

    async def create() -> str:
        info = await api.add_file(matter_id, body, request_id=host.request_id(ctx, mark, "document"))
        upload["url"] = info.upload_url
        return f"{matter_id}/{info.file_id}"

    async def find() -> str | None:
        for f in await api.files(matter_id):
            if f.marker == mark:
                upload["found_uploaded"] = "yes" if f.is_uploaded else ""
                return f"{matter_id}/{f.id}"
        return None

    doc = await host.step(ctx, "document", "document", create=create, find=find)
    done = find_record(ctx.delivery.records, "document", "uploaded") if ctx.delivery else None
    if done is not None:
        return doc, done
    if upload.get("found_uploaded"):  # an earlier attempt uploaded it; only its answer was lost
        return doc, await _uploaded(ctx, doc)
    url = upload.get("url")
    if url is None:  # an earlier attempt created the file: ask for a fresh upload URL
        data = (await ctx.http.get(f"/matters/{matter_id}/documents/files/"
                                   f"{split(doc.id)[1]}/upload")).json()
        url = str(data.get("uploadUrl") or "")
        if not url:
            raise TransientError("Smokeball gave the fax file no upload URL")
    content = await _document_bytes(ctx, event)
    # A bare client: the URL is pre-signed, and neither our token nor the API key may
    # reach the storage host. Smokeball asks for an empty Content-Type.
    await ctx.bare_http.put(url, content=content, headers={"Content-Type": ""})
    return doc, await _uploaded(ctx, doc)


async def _uploaded(ctx: HookContext, doc: Record) -> Record:
    uploaded = Record(kind="document", id=doc.id, step="uploaded")
    if ctx.delivery is not None:
        await ctx.delivery.remember(uploaded)
    return uploaded


async def log_fax(ctx: HookContext, event: FaxEvent, target: LogTarget) -> LogResult:
    """The fax file on the contact's one matter; without both, skipped with the reason."""
    if not target.contacts:
        raise SkipEvent("no_contact", "A Smokeball fax is filed on a matter of a known contact; "
                                      "the fax has no contact.")
    if target.matter is None:
        raise SkipEvent("no_matter", "A Smokeball fax is filed on the contact's one open matter; "
                                     "the contact has none or several.")
    if event.document is None:
        raise SkipEvent("no_document", "The fax carries no document to file.")
    mark = host.marker(ctx, event) or event.marker
    try:
        doc, uploaded = await _upload(ctx, event, target, mark)
    except (RateLimited, AuthenticationFailed):
        # The host's waits (room in a full window, new credentials), not a failed upload:
        # never a reason to give the document up, however many attempts were spent.
        raise
    except (AppError, OSError) as exc:
        doc_rec = find_record(ctx.delivery.records, "document", "document") if ctx.delivery \
            else None
        attempt = ctx.delivery.attempt if ctx.delivery else UPLOAD_ATTEMPTS
        retryable = not isinstance(exc, AppError) or exc.retryable
        if doc_rec is None or (attempt < UPLOAD_ATTEMPTS and retryable):
            raise
        return accepted(doc_rec, missing=("document",))
    return accepted(doc, *(() if uploaded is None else (uploaded,)))


# --- late details ------------------------------------------------------------------------------


async def update_log(ctx: HookContext, event: AnyEvent, records: list[Record]) -> LogResult:
    """Late details edit the Fee description, the Task note or the Memo text in place."""
    kept = tuple(records)
    if isinstance(event, FaxEvent):
        return LogResult(records=kept, status=LogStatus.ACCEPTED)  # a filed fax has no text
    api = SmokeballApi(ctx.http)
    mark = host.marker(ctx, event) or event.marker
    rid = host.request_id(ctx, mark, "update")
    fee, task, memo = find_record(kept, "fee"), find_record(kept, "task"), find_record(kept, "memo")
    if isinstance(event, SmsEvent):
        if memo is not None:
            matter_id, memo_id = split(memo.id)
            current_memo = await api.memo(matter_id, memo_id)
            await api.update("PUT", f"/matters/{matter_id}/memos/{memo_id}", {
                "title": current_memo.title or render.subject(event, _bare_target()),
                "text": render.revised_message(current_memo.plain_text or current_memo.text or "",
                                               event, mark)}, request_id=rid)
        elif task is not None:
            current_task = await api.task(task.id)
            dto = current_task.as_dto()
            dto["note"] = render.revised_message(current_task.note or "", event, mark)
            await api.update("PUT", f"/tasks/{task.id}", dto, request_id=rid)
        return LogResult(records=kept, status=LogStatus.ACCEPTED)
    if fee is not None:
        matter_id, fee_id = split(fee.id)
        current = await api.fee(matter_id, fee_id)
        await api.update("PATCH", f"/matters/{matter_id}/fees/{fee_id}", {
            "subject": current.subject or render.subject(event, _bare_target()),
            "feeDate": (current.fee_date or render.local_date(event, ctx.tenant.time_zone)
                        .isoformat()),
            "description": render.revised_text(current.description or "", event, mark)},
            request_id=rid)
    elif task is not None:
        current_task = await api.task(task.id)
        dto = current_task.as_dto()
        dto["note"] = render.revised_text(current_task.note or "", event, mark)
        await api.update("PUT", f"/tasks/{task.id}", dto, request_id=rid)
    else:
        raise SkipEvent("nothing_to_update", "No Smokeball fee or task was written for this call.")
    return LogResult(records=kept, status=LogStatus.ACCEPTED)


def _bare_target() -> LogTarget:
    return LogTarget()


# --- confirmation of accepted writes ---------------------------------------------------------


async def confirm_accepted(ctx: HookContext, records: list[Record], since: datetime
                           ) -> dict[str, bool | None]:
    """Which accepted records Smokeball now shows: one read for all tasks (updated since),
    one per matter for its fees, memos and files, one per contact."""
    api = SmokeballApi(ctx.http)
    out: dict[str, bool | None] = {}
    tasks = [r for r in records if r.kind == "task"]
    if tasks:
        seen = {t.id for t in await api.tasks_updated_since(since)}
        out |= {r.id: r.id in seen for r in tasks}
    by_matter: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if r.kind in ("fee", "memo", "document"):
            by_matter.setdefault((r.kind, split(r.id)[0]), []).append(r)
    for (kind, matter_id), group in by_matter.items():
        if kind == "fee":
            ids = {f.id for f in await api.fees_updated_since(matter_id, since)}
        elif kind == "memo":
            ids = {m.id for m in await api.memos(matter_id)}
        else:
            ids = {f.id for f in await api.files(matter_id)}
        out |= {r.id: split(r.id)[1] in ids for r in group}
    contacts = [r for r in records if r.kind == "contact"]
    if contacts:
        seen = {c.id for c in await api.contacts_updated_since(since)}
        out |= {r.id: r.id in seen for r in contacts}
    for r in records:
        out.setdefault(r.id, None)
    return out
