"""The rules every event's text follows, and reading event JSON without surprises.

Limits per field (stated in the event schema), control characters refused in
text that goes to an app, JSON read with bounded integers and no NaN, and
validation errors turned into :class:`~callbridge.errors.FieldProblem` lists
that never hold an input value or the name of an unknown key.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError

from callbridge.errors import EventValidationError, FieldProblem

#: The largest fax document taken inline, once decoded.
DOCUMENT_MAX_BYTES = 10 * 1024 * 1024
#: The largest ``sequence`` (a signed 64-bit integer).
SEQUENCE_MAX = 2**63 - 1
#: Digits in the longest integer read from event JSON.
INTEGER_MAX_DIGITS = 20
#: Problems reported for one event, at most; the rest are counted.
PROBLEMS_MAX = 20

# One-line text: no control character at all (C0, DEL, C1), and no lone surrogate
# (which no encoding can store). Multi-line text also takes tab, line feed, carriage
# return and NEL (U+0085); U+2028/U+2029 are not controls and pass in both.
_LINE_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TEXT_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff]")


def _one_line(value: str) -> str:
    if _LINE_BAD.search(value):
        raise ValueError("holds a control character (none are allowed here)")
    return value


def _text(value: str) -> str:
    if _TEXT_BAD.search(value):
        raise ValueError("holds a NUL or control character other than tab and line breaks")
    return value


Line = Annotated[str, Field(max_length=200), AfterValidator(_one_line)]
"""One line of text (a name, a file name): at most 200 characters, no control characters."""
Text = Annotated[str, Field(max_length=20000), AfterValidator(_text)]
"""Multi-line text (notes, an SMS body, a summary): at most 20,000 characters."""
LongText = Annotated[str, Field(max_length=200000), AfterValidator(_text)]
"""A transcript: at most 200,000 characters."""
Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"),
                  AfterValidator(_one_line)]
Url = Annotated[str, Field(max_length=2000, pattern=r"^https?://"), AfterValidator(_one_line)]


def base64_limit(decoded_bytes: int) -> int:
    """The longest base64 text of ``decoded_bytes`` bytes, padding included."""
    return 4 * ((decoded_bytes + 2) // 3)


def event_marker(tenant: str, source: str, kind: str, event_id: str) -> str:
    """The unkeyed marker of an event's identity (``cb1-``), written into apps before 2.0."""
    digest = hashlib.sha256("\x1f".join((tenant, source, kind, event_id)).encode()).hexdigest()
    return f"cb1-{digest[:32]}"


# --- JSON ---------------------------------------------------------------------------------


class _JsonLimit(ValueError):
    pass


def _int(text: str) -> int:
    if len(text.lstrip("-")) > INTEGER_MAX_DIGITS:
        raise _JsonLimit(f"an integer has more than {INTEGER_MAX_DIGITS} digits")
    return int(text)


def _constant(name: str) -> Any:
    raise _JsonLimit(f"{name} is not a JSON number")


def loads(text: str | bytes) -> Any:
    """JSON text to Python, every failure an :class:`EventValidationError`.

    Bytes must be UTF-8; integers are bounded; NaN and Infinity are refused; JSON
    nested deeper than Python can follow is a problem, not a ``RecursionError``.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventValidationError([FieldProblem(
                "(json)", f"not UTF-8 text (at byte {exc.start + 1})")]) from None
    try:
        return json.loads(text, parse_int=_int, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise EventValidationError([FieldProblem(
            "(json)", f"not valid JSON at column {exc.colno}: {exc.msg}")]) from None
    except _JsonLimit as exc:
        raise EventValidationError([FieldProblem("(json)", str(exc))]) from None
    except RecursionError:
        raise EventValidationError([FieldProblem("(json)", "nested too deeply")]) from None
    except ValueError:  # what else the decoder may say holds no input
        raise EventValidationError([FieldProblem("(json)", "cannot be read as JSON")]) from None


# --- errors -------------------------------------------------------------------------------

# Field names a model-level check may start its message with ("ended_at is ..."):
# the problem is reported at that field.
_CHECKED_FIELDS = frozenset({"ended_at", "outcome", "answered_at", "number", "content", "url"})
_UNION_TAGS = frozenset({"call", "sms", "fax"})


def _is_union_tag(part: object) -> bool:
    return part in _UNION_TAGS or (isinstance(part, str) and part.startswith("function-"))


def problems_of(exc: ValidationError, prefix: str = "") -> list[FieldProblem]:
    """Locations and messages of a pydantic error, without input values.

    An unknown key is reported where it was found as ``(unknown field)``: its name
    is chosen by whoever wrote the input, so it is never echoed. Identical problems
    are reported once, and at most :data:`PROBLEMS_MAX` of them.
    """
    out: list[FieldProblem] = []
    seen: set[tuple[str, str]] = set()
    extra = 0
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        parts = [str(p) for p in err["loc"] if not _is_union_tag(p)]
        msg = err["msg"]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            parts, msg = ["kind"], "must be one of 'call', 'sms', 'fax'"
        elif err["type"] == "extra_forbidden":
            parts, msg = [*parts[:-1], "(unknown field)"], "is not a field of this object"
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        first = msg.split(" ", 1)[0]
        if first in _CHECKED_FIELDS and (not parts or parts[-1] != first):
            parts, msg = [*parts, first], msg[len(first):].lstrip()
        key = (prefix + (".".join(parts) or "(event)"), msg)
        if key in seen:
            continue
        if len(out) >= PROBLEMS_MAX:
            extra += 1
            continue
        seen.add(key)
        out.append(FieldProblem(*key))
    if extra:
        out.append(FieldProblem("(event)", f"and {extra} more problem(s)"))
    return out
