"""A firm's triggers: which custom fields must exist, and whether a closed matter is sent.

Pure functions over the settings and what the source returned (SPEC §5):

* opt-out: a checkbox on the client contact; checked means do not send;
* opt-in: a checkbox on the matter; the client is sent only when it is checked;
* both: sent when the matter is opted in and the client is not opted out;
* neither: nothing is sent unless ``send_every_closed_matter``.

Fields are matched by exact, case-sensitive name; a field left unset counts as
unchecked. A field of an enabled trigger that the app does not have, or that is not
a checkbox, is a configuration error (:func:`field_problems`): nothing of that firm
is sent while it stands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from callbridge.models import ClosedMatter, CustomField
from callbridge.settings_closing import ClosedMatterSettings

#: Why a closed matter's client is not sent.
SkipReason = Literal["opted_out", "not_opted_in", "no_trigger"]


@dataclass(frozen=True)
class Decision:
    """Whether to send, and if not, why (a code and one sentence)."""

    send: bool
    reason: SkipReason | None = None
    why: str = ""


def asked_fields(settings: ClosedMatterSettings) -> tuple[list[str], list[str]]:
    """The contact and matter fields whose values the source is asked for."""
    contact = [settings.opt_out.field] if settings.opt_out.enabled else []
    matter = [settings.opt_in.field] if settings.opt_in.enabled else []
    return contact, matter


def field_problems(settings: ClosedMatterSettings, fields: Iterable[CustomField],
                   source: str) -> list[str]:
    """One sentence per enabled trigger whose field is missing or not a checkbox."""
    known: dict[tuple[str, str], CustomField] = {(f.on, f.name): f for f in fields}
    problems = []
    for trigger, on in ((settings.opt_out, "contact"), (settings.opt_in, "matter")):
        if not trigger.enabled:
            continue
        found = known.get((on, trigger.field))
        if found is None or not found.exists:
            problems.append(f"the {on} custom field {trigger.field!r} does not exist in "
                            f"{source} (names are matched exactly, case included)")
        elif not found.is_checkbox:
            problems.append(f"the {on} custom field {trigger.field!r} in {source} is a "
                            f"{found.field_type} field, not a checkbox")
    return problems


def checked(value: object) -> bool:
    """A checkbox's value: only True is checked (unset, None, is unchecked)."""
    return value is True


def decide(settings: ClosedMatterSettings, matter: ClosedMatter) -> Decision:
    """Whether the closed matter's client is sent under the firm's triggers."""
    out, into = settings.opt_out, settings.opt_in
    if not out.enabled and not into.enabled:
        if settings.send_every_closed_matter:
            return Decision(True)
        return Decision(False, "no_trigger", "no trigger is enabled and the firm does not "
                                             "send every closed matter")
    if into.enabled and not checked(matter.custom_fields.get(into.field)):
        return Decision(False, "not_opted_in", f"not opted in: {into.field} is not checked "
                                               "on the matter")
    if out.enabled and checked(matter.client.custom_fields.get(out.field)):
        return Decision(False, "opted_out", f"opted out: {out.field} is checked on the client")
    return Decision(True)
