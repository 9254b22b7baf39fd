"""What the sandbox accepts in a write, from the published DTOs, and its error body."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

#: Body keys each write accepts (from the published DTOs); anything else is a 400 here,
#: so a plugin that sends a key Smokeball does not know is caught in tests.
BODY_KEYS: dict[str, set[str]] = {
    "contact": {"externalSystemId", "person", "company", "trust", "groupOfPeople", "isDeleted"},
    "activity": {"updatedByUserId", "type", "description", "code", "isBillable", "rateType",
                 "rate", "quantity", "taxInclusive", "taxExempt", "taxZeroRated",
                 "taxOutOfScope", "inputTaxRate", "outputTaxRate"},
    "fee": {"updatedByUserId", "staffId", "invoiceId", "activityCode", "feeType", "feeDate",
            "subject", "description", "duration", "durationWorked", "rate", "tax",
            "taxInclusive", "taxExempt", "taxOutOfScope", "finalized", "isWrittenOff",
            "isBillable", "isInvoicedExternally", "sourceItems", "createdFromActivityId"},
    "task": {"matterId", "staffId", "completedByStaffId", "assigneeIds", "subject", "note",
             "isCompleted", "categories", "completedDate", "completedDateOnly", "dueDate",
             "dueDateOnly", "duration"},
    "memo": {"title", "text", "userId", "createdDateUtc"},
    "file": {"fileName", "folderId", "userId", "folderPath", "fileAdditionalData",
             "dateCreated", "dateModified"},
}
REQUIRED: dict[str, set[str]] = {"fee": {"feeDate", "subject"}, "task": {"staffId"},
                                  "memo": {"title", "text"}, "file": {"fileName"}}


def problem(status: int, title: str, detail: str | None = None) -> JSONResponse:
    """Smokeball's error body: a ProblemDetails object."""
    body: dict[str, Any] = {"type": f"https://httpstatuses.io/{status}", "title": title,
                            "status": status}
    if detail:
        body["detail"] = detail
    return JSONResponse(body, status_code=status)


