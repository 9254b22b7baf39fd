"""Fictional phone numbers and e-mail addresses for cassettes.

A cassette must never hold a real person's number or address, yet the code
under test parses what it replays: a number replaced by "REDACTED" would turn
unreadable and a match would silently fail. So each real number becomes a
*fictional number of the same country*, valid by ``phonenumbers``, chosen
deterministically from the original (the same number always maps to the same
fictional one, so a request and its replay still match):

* North America (+1): NXX 555-0100 to 555-0199, keeping the area code when the
  result is valid, else area code 212;
* United Kingdom (+44): 020 7946 0000 to 0999;
* Australia (+61): (02) 5550 xxxx for fixed lines (also 03, 07, 08 are
  accepted as fictional), 0491 570 006 / 156 to 159 for mobiles;
* any other country: ``phonenumbers``' example number for that region (one
  per type; distinct numbers of such a country collapse to one).

E-mail addresses become ``<hash>@example.com``; addresses at the reserved
example domains stay as they are.
"""

from __future__ import annotations

import hashlib
import re

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType

__all__ = [
    "fictional_email",
    "fictional_number",
    "is_example_email",
    "is_fictional",
]

_AU_MOBILES = (491570006, 491570156, 491570157, 491570158, 491570159)
_EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net")
_EXAMPLE_TLDS = (".example", ".test", ".invalid", ".localhost")
_EMAIL_SAFE = re.compile(r"[^a-z0-9]")


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _e164(number: PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _examples(region: str | None) -> set[int]:
    if region is None:
        return set()
    out: set[int] = set()
    for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE,
                 PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.TOLL_FREE):
        example = phonenumbers.example_number_for_type(region, kind)
        if example is not None and example.national_number is not None:
            out.add(example.national_number)
    return out


def is_fictional(number: PhoneNumber) -> bool:
    """Whether ``number`` lies in a range reserved for fiction (see the module doc)."""
    national = number.national_number or 0
    text = str(national)
    if number.country_code == 1:
        return 5550100 <= national % 10_000_000 <= 5550199
    if number.country_code == 44:
        return len(text) == 10 and text.startswith("2079460")
    if number.country_code == 61:
        return national in _AU_MOBILES or (
            len(text) == 9 and text[0] in "2378" and text[1:5] == "5550")
    return national in _examples(phonenumbers.region_code_for_number(number))


def fictional_number(number: PhoneNumber) -> PhoneNumber:
    """A valid fictional number of the same country, the same for the same input.

    A number that is already fictional is returned unchanged.
    """
    if is_fictional(number):
        return number
    seed = _digest(_e164(number))
    country = number.country_code
    if country == 1:
        area = str(number.national_number)[:3]
        candidate = phonenumbers.parse(f"+1{area}55501{seed % 100:02d}")
        if not phonenumbers.is_valid_number(candidate):
            candidate = phonenumbers.parse(f"+121255501{seed % 100:02d}")
        return candidate
    if country == 44:
        return phonenumbers.parse(f"+442079460{seed % 1000:03d}")
    if country == 61:
        if phonenumbers.number_type(number) == PhoneNumberType.MOBILE:
            return phonenumbers.parse(f"+61{_AU_MOBILES[seed % len(_AU_MOBILES)]}")
        return phonenumbers.parse(f"+6125550{seed % 10000:04d}")
    region = phonenumbers.region_code_for_number(number)
    kind = (PhoneNumberType.MOBILE if phonenumbers.number_type(number) == PhoneNumberType.MOBILE
            else PhoneNumberType.FIXED_LINE)
    example = phonenumbers.example_number_for_type(region, kind) if region else None
    if example is None:  # a country without example data: a North American stand-in
        return phonenumbers.parse(f"+121255501{seed % 100:02d}")
    return example


def is_example_email(address: str) -> bool:
    """Whether the address is at a domain reserved for examples."""
    domain = address.rsplit("@", 1)[-1].lower()
    return domain in _EXAMPLE_DOMAINS or domain.endswith(_EXAMPLE_TLDS)


def fictional_email(address: str) -> str:
    """``<hash>@example.com`` for a real address; example addresses unchanged."""
    if is_example_email(address):
        return address
    return f"user-{hashlib.sha256(address.lower().encode()).hexdigest()[:10]}@example.com"
