"""A person's data erased on request (``callbridge erase``): their client details in the
closed-matter sends not yet made.

A send keeps the client's name, email and numbers only until it is sent (then only
the record and the matter's id remain). An erasure drops them from every unsent send
whose client has the number, and the send ends *failed* (reason ``erased``): it is
never made with data the person asked to have erased.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from callbridge.closing.store import SEND, UNSENT, Send
from callbridge.models import OutcomeStatus
from callbridge.settings import TenantSettings


def erase_number(ledger: Any, tenant_id: str, tenant: TenantSettings, e164: str) -> int:
    """Drop the client details holding ``e164`` from the tenant's unsent sends; how many."""
    closed = tenant.closed_matters
    if closed is None:
        return 0
    app = closed.destination
    raw = ledger.kv_get(tenant_id, app, UNSENT)
    erased = 0
    for key in json.loads(raw) if raw else []:
        text = ledger.kv_get(tenant_id, app, SEND + key)
        if not text:
            continue
        send = Send.model_validate_json(text)
        if send.matter is None or e164 not in send.matter.client.phones:
            continue
        send.matter = None
        send.status, send.reason = OutcomeStatus.FAILED, "erased"
        send.message = "the client's details were erased on request; this send is not made"
        send.updated_at = datetime.now(UTC)
        ledger.kv_set(tenant_id, app, SEND + key, send.model_dump_json())
        erased += 1
    return erased
