"""A copy of the notebook plugin whose find_contact hides every error as "no contact"."""

import callbridge_notebook as _notebook
from callbridge.context import HookContext
from callbridge.events import ExternalParty
from callbridge.hookspecs import hookimpl
from callbridge.models import Contact
from callbridge_notebook import (  # noqa: F401 - re-exported as this plugin's hooks
    connection,
    contacts_changed_since,
    create_contact,
    declare,
    find_matters,
    find_user,
    log_call,
    log_fax,
    log_sms,
    pick_default_user,
    update_log,
)


@hookimpl
async def find_contact(ctx: HookContext, party: ExternalParty) -> list[Contact]:
    try:
        return await _notebook.find_contact(ctx, party)
    except Exception:  # the bug under test: a broad except that hides what went wrong
        return []
