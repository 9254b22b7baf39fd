"""A copy of the notebook plugin that neither declares fax nor implements log_fax."""

import callbridge_notebook as _notebook
from callbridge.capabilities import Capability, Declaration
from callbridge.hookspecs import hookimpl
from callbridge_notebook import (  # noqa: F401 - re-exported as this plugin's hooks
    connection,
    contacts_changed_since,
    create_contact,
    find_contact,
    find_matters,
    find_user,
    log_call,
    log_sms,
    pick_default_user,
    update_log,
)


@hookimpl
def declare() -> Declaration:
    notebook = _notebook.declare()
    return notebook.model_copy(
        update={"capabilities": notebook.capabilities - {Capability.FAX}})
