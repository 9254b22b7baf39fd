"""The Clio Manage plugin: calls, SMS and faxes into Clio (API v4).

What is written (docs/plugins/clio.md has the details and the reasons):

* a call: a PhoneCommunication, plus a TimeEntry for the talk time when the call
  was completed; an SMS: a PhoneCommunication; a fax: a PhoneCommunication and
  the fax document, uploaded through Clio's three-step flow and linked to it.
* every communication and document carries the event's marker in
  ``external_properties`` and is looked up by it before a retry creates again;
  a time entry is found through its communication; a contact through a search
  of contacts created since the first attempt, re-checked by number.

The package is split by concern: :mod:`.settings`, :mod:`.rendering`,
:mod:`.contacts`, :mod:`.matters`, :mod:`.users`, :mod:`.records`,
:mod:`.documents`, :mod:`.closed` (closed matters for the closed-matter sync),
:mod:`.webhooks` (Clio's matter webhooks, as app events);
:mod:`.hooks` holds the hook implementations, re-exported here
(the ``callbridge.plugins`` entry point names this package). The sandbox and the demo
need the ``sandbox`` extra.
"""

from __future__ import annotations

from typing import Any

from callbridge_clio.hooks import (
    closed_matters_since,
    connection,
    contacts_changed_since,
    create_contact,
    declare,
    ensure_activity_code,
    find_contact,
    find_matters,
    find_user,
    log_call,
    log_fax,
    log_sms,
    parse_app_event,
    pick_default_user,
    renew_app_events,
    subscribe_app_events,
    update_log,
    verify_app_event,
)
from callbridge_clio.settings import API_VERSION, UPLOAD_ATTEMPTS, ClioSettings, __version__

#: Helpers re-exported from the module of their concern, imported on first use (they need
#: the HTTP client and the host's event models, which loading the plugin does not).
_LAZY = {"search_texts": "contacts", "split_name": "contacts", "body": "rendering",
         "revised_body": "rendering", "subject": "rendering"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "API_VERSION",
    "UPLOAD_ATTEMPTS",
    "ClioSettings",
    "__version__",
    "body",
    "closed_matters_since",
    "connection",
    "contacts_changed_since",
    "create_contact",
    "declare",
    "ensure_activity_code",
    "find_contact",
    "find_matters",
    "find_user",
    "log_call",
    "log_fax",
    "log_sms",
    "parse_app_event",
    "pick_default_user",
    "renew_app_events",
    "revised_body",
    "search_texts",
    "split_name",
    "subject",
    "subscribe_app_events",
    "update_log",
    "verify_app_event",
]
