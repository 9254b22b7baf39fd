"""A copy of the notebook plugin whose declaration is wrong: it declares sms, has no log_sms."""

from callbridge_notebook import (  # noqa: F401 - re-exported as this plugin's hooks
    connection,
    contacts_changed_since,
    create_contact,
    declare,
    find_contact,
    find_matters,
    find_user,
    log_call,
    log_fax,
    pick_default_user,
    update_log,
)
