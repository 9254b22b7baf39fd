"""Phone numbers: reading stored text as E.164, and caller-ID names.

Matching compares E.164 strings only. Text that does not read as exactly one
valid number (too many digits, words, no area code, two numbers in one field)
is *unreadable*: reported, never matched.
"""

from __future__ import annotations

import functools
import re

# phonenumbers (its metadata tables take a while to load) is imported by the functions
# that read a number, on first use: importing the event models does not load it.

#: The longest text read as a phone number; longer text is unreadable before any
#: pattern runs (a typed number with an extension and spacing fits easily).
MAX_LENGTH = 64

# Characters a person types around one number; anything else (letters other
# than an extension marker, a slash between two numbers) makes the text unreadable.
# The extension pattern starts with its marker, never with a repeatable class, so
# a search cannot rescan a run of spaces from every position; the text is stripped
# before it runs, and what is left of the number is stripped after.
_EXTENSION = re.compile(r"(?:ext\.?|extension|x|#)\s*\d{1,7}$", re.IGNORECASE)
_ALLOWED = re.compile(r"^[\d\s().+\-]*$")


class UnreadableNumber(ValueError):
    """The text is not exactly one valid phone number. The message never holds the text."""


def to_e164(text: str, region: str) -> str:
    """Read ``text`` as one phone number in the firm's default ``region``.

    Returns the E.164 form ("+12125550142"). Extensions are ignored. Raises
    :class:`UnreadableNumber` with the reason when the text is not exactly one
    valid number, or is longer than :data:`MAX_LENGTH` characters.
    """
    text = text or ""
    if len(text) > MAX_LENGTH:  # before any pattern or cache sees it
        raise UnreadableNumber(f"longer than {MAX_LENGTH} characters")
    result = _read(text, region.upper())
    if isinstance(result, UnreadableNumber):
        raise UnreadableNumber(str(result))
    return result


@functools.lru_cache(maxsize=2048)
def _read(text: str, region: str) -> str | UnreadableNumber:
    # A small cache: the same few numbers (a firm's busiest callers, its own lines)
    # are read again and again. Bounded in entries, and each entry in length.
    try:
        return _parse(text, region)
    except UnreadableNumber as exc:
        return exc


def _parse(text: str, region: str) -> str:
    raw = (text or "").strip()
    if raw.lower().startswith("tel:"):
        raw = raw[4:].split(";", 1)[0]
    extension = _EXTENSION.search(raw)
    if extension is not None:
        raw = raw[:extension.start()].rstrip()
    # "(0)" is the UK convention for an optional trunk digit after the country code.
    raw = raw.replace("(0)", "")
    if not raw:
        raise UnreadableNumber("empty")
    if not any(ch.isdigit() for ch in raw):
        raise UnreadableNumber("no digits")
    if not _ALLOWED.match(raw):
        raise UnreadableNumber("characters other than one number")
    import phonenumbers

    try:
        number = phonenumbers.parse(raw, region.upper())
    except phonenumbers.NumberParseException as exc:  # not a ValueError: convert it
        raise UnreadableNumber(f"cannot be parsed ({exc.error_type})") from None
    if not phonenumbers.is_valid_number(number):
        raise UnreadableNumber("not a valid number for its region")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def try_e164(text: str, region: str) -> str | None:
    """:func:`to_e164`, returning None for unreadable text."""
    try:
        return to_e164(text, region)
    except UnreadableNumber:
        return None


def national_digits(e164: str) -> str:
    """The national significant number of an E.164 string ("2125550142")."""
    import phonenumbers

    return str(phonenumbers.parse(e164).national_number)


def search_forms(e164: str) -> list[str]:
    """The forms a number is commonly stored in, for apps that search text."""
    import phonenumbers

    number = phonenumbers.parse(e164)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    digits = str(number.national_number)
    forms = [e164, international, national, digits]
    if number.country_code == 1 and len(digits) == 10:
        forms += [f"{digits[:3]}-{digits[3:6]}-{digits[6:]}", f"{digits[:3]}.{digits[3:6]}.{digits[6:]}"]
    seen: list[str] = []
    for form in forms:
        if form not in seen:
            seen.append(form)
    return seen


def mask_number(text: str) -> str:
    """All but the last 4 digits hidden: "+12125550142" -> "+*******0142"."""
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    keep = set(digits[-4:])
    return "".join(ch if (not ch.isdigit() or i in keep) else "*" for i, ch in enumerate(text))


# Caller-ID text that names nobody. Compared case-insensitively after trimming.
GENERIC_CALLER_ID_NAMES: frozenset[str] = frozenset({
    "wireless caller", "unknown", "unknown caller", "unknown name", "anonymous",
    "private", "private caller", "private number", "restricted", "blocked",
    "unavailable", "out of area", "toll free", "toll free call", "cell phone",
    "mobile", "caller", "no caller id", "name unavailable", "not available",
    "v", "o", "p",
})

# "SEATTLE WA", "New York, NY", "TORONTO ON": a place and a state/province code.
_PLACE = re.compile(r"^[A-Za-z .'-]{2,}$")
_REGION_CODES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH "
    "NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR "
    "AB BC MB NB NL NS NT NU ON PE QC SK YT".split())


def caller_name(raw: str | None, number_text: str | None = None) -> str | None:
    """The caller-ID name if it names someone, else None.

    Generic text ("WIRELESS CALLER", "UNKNOWN", "ANONYMOUS"), a city and state,
    and the number itself count as no name.
    """
    if raw is None:
        return None
    name = " ".join(raw.split())
    if not name:
        return None
    if name.lower() in GENERIC_CALLER_ID_NAMES:
        return None
    if _is_place(name):
        return None
    digits = re.sub(r"\D", "", name)
    if digits and len(digits) >= 4 and not re.search(r"[A-Za-z]", name):
        return None  # the number, or part of it, shown as the name
    if number_text and digits and digits in re.sub(r"\D", "", number_text):
        return None
    return name


def _is_place(name: str) -> bool:
    """Whether ``name`` is a place and an upper-case state or province code.

    Split with string operations: a pattern whose parts can each take the same
    spaces would try every split of a long run of them.
    """
    code = name[-2:]
    head = name[:-2]
    if not (len(head) > 2 and head[-1] in " ," and code.isalpha() and code.isascii()):
        return False
    head = head.rstrip(" ,")
    return code in _REGION_CODES and len(head) >= 2 and _PLACE.match(head) is not None
