"""Deprecated import name of the notebook example: use ``callbridge.examples.notebook``."""

from callbridge.examples.notebook import *  # noqa: F403
from callbridge.examples.notebook import (  # noqa: F401 - the hooks, for code that imports them
    NotebookSettings,
    __version__,
    connection,
    contacts_changed_since,
    create_contact,
    declare,
    find_contact,
    find_matters,
    find_user,
    log_call,
    log_fax,
    log_sms,
    pick_default_user,
    update_log,
)
