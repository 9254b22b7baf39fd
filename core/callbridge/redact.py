"""Redaction: no token, signed URL or full phone number in a log line or a message.

:func:`redact` is applied to every exception message the HTTP layer builds and,
after :func:`install_log_redaction`, to every log record of the process
(httpx2 logs full URLs at INFO, and a contact search puts the number in the
query string). It masks:

* phone numbers (E.164, national forms, also URL-encoded such as ``%2B1212...``):
  all but the last 4 digits, as :func:`mask_number` does;
* ``Bearer``/``Basic`` credentials and ``Authorization``/API-key header values;
* the values of ``access_token``, ``refresh_token``, ``id_token``,
  ``client_secret``, ``code``, ``api_key``, ``password``, ``token`` and signature
  parameters, in query strings, form bodies and JSON;
* the whole query string of a signed URL (``X-Amz-Signature``, ``Signature``,
  ``sig``, ``token``): the path stays, the query becomes ``?[redacted]``;
* any value registered with :func:`register_secret` (the HTTP layer registers
  each credential and token it holds), raw or URL-encoded.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict, deque
from typing import Any, NamedTuple
from urllib.parse import quote, quote_plus

from callbridge.phones import mask_number

__all__ = [
    "RedactingFilter",
    "forget_secret",
    "install_log_redaction",
    "mask_number",
    "redact",
    "register_secret",
]

MASK = "[redacted]"

# --- known secret values --------------------------------------------------------

#: Unslotted secrets kept at most (the oldest is forgotten first).
MAX_SECRETS = 1024
#: Values a slot keeps: the current one and the one it replaced (still in flight).
SLOT_DEPTH = 2

_recent: OrderedDict[str, None] = OrderedDict()
_slots: dict[str, deque[str]] = {}
_secrets_lock = threading.Lock()


class _Generation(NamedTuple):
    """Forms compiled together into one pattern, longest first."""

    forms: frozenset[str]
    pattern: re.Pattern[str]


# A process holding many connections registers their tokens one by one, each followed
# by requests whose messages are redacted. One pattern of every form, compiled again
# after each registration, would cost O(n) per token and O(n^2) in all (a thousand
# connections: about a minute of processor time). Instead forms are compiled in
# generations whose sizes at least halve from the oldest to the newest, merged like a
# binary counter: each form is compiled O(log n) times in all, and a text is searched
# by O(log n) patterns.
_generations: tuple[_Generation, ...] = ()
#: Form -> how many kept values have it (a form masks while its count is above 0).
_live: dict[str, int] = {}
#: Forms registered since the last compile.
_pending: set[str] = set()
#: Forms compiled into a generation but no longer kept (ignored until rebuilt away).
_stale: set[str] = set()
#: Forms compiled so far (diagnostics and tests: the work compiling costs).
compiled_forms_total = 0


def _forms(value: str) -> set[str]:
    return {value, quote(value, safe=""), quote_plus(value, safe="")}


def _keep(value: str) -> None:
    for form in _forms(value):
        count = _live.get(form, 0)
        _live[form] = count + 1
        if count == 0:
            if form in _stale:
                _stale.discard(form)  # still in its generation
            else:
                _pending.add(form)


def _drop(value: str) -> None:
    for form in _forms(value):
        count = _live.get(form, 0) - 1
        if count > 0:
            _live[form] = count
            continue
        _live.pop(form, None)
        if form in _pending:
            _pending.discard(form)
        else:
            _stale.add(form)


def _compile(forms: set[str] | frozenset[str]) -> _Generation:
    global compiled_forms_total
    compiled_forms_total += len(forms)
    ordered = sorted(forms, key=len, reverse=True)
    return _Generation(frozenset(forms), re.compile("|".join(re.escape(f) for f in ordered)))


def _current(*, rebuild: bool = False) -> tuple[_Generation, ...]:
    """The generations to search, compiling what was registered since (under the lock)."""
    global _generations
    if not (_pending or rebuild or len(_stale) > max(64, len(_live))):
        return _generations
    with _secrets_lock:
        if rebuild or len(_stale) > max(64, len(_live)):
            _pending.clear()
            _stale.clear()
            _generations = (_compile(set(_live)),) if _live else ()
            return _generations
        if not _pending:
            return _generations
        generations = [*_generations, _compile(set(_pending))]
        _pending.clear()
        while len(generations) > 1 and len(generations[-1].forms) * 2 > len(generations[-2].forms):
            newer, older = generations.pop(), generations.pop()
            gone = (newer.forms | older.forms) & _stale
            _stale.difference_update(gone)
            generations.append(_compile((newer.forms | older.forms) - gone))
        _generations = tuple(generations)
        return _generations


def register_secret(value: str | None, *, slot: str | None = None) -> None:
    """Make :func:`redact` hide ``value`` wherever it appears (raw or URL-encoded).

    ``slot`` names what the value is (e.g. one connection's access token): a
    slot keeps its newest :data:`SLOT_DEPTH` values and forgets older ones, so
    refreshed tokens do not pile up. Without a slot the newest
    :data:`MAX_SECRETS` values are kept. Values shorter than 8 characters are
    ignored: they would mask ordinary words.
    """
    if not value or len(value) < 8:
        return
    with _secrets_lock:
        if slot is not None:
            kept = _slots.setdefault(slot, deque(maxlen=SLOT_DEPTH))
            if value in kept:
                return
            if len(kept) == SLOT_DEPTH:
                _drop(kept[0])
            kept.append(value)
        else:
            if value in _recent:
                _recent.move_to_end(value)
                return
            _recent[value] = None
            while len(_recent) > MAX_SECRETS:
                _drop(_recent.popitem(last=False)[0])
        _keep(value)


def forget_secret(slot: str) -> None:
    """Forget every value of ``slot`` (a connection removed, a token revoked)."""
    with _secrets_lock:
        for value in _slots.pop(slot, ()):
            _drop(value)


def secret_count() -> int:
    """How many distinct secret values are kept now (diagnostics and tests)."""
    with _secrets_lock:
        return len(set(_recent).union(*_slots.values()))


def _mask_secrets(text: str) -> str:
    spans: list[tuple[int, int]] = []
    for attempt in (0, 1):
        spans.clear()
        stale = False
        for generation in _current(rebuild=attempt == 1):
            for match in generation.pattern.finditer(text):
                if match.group() in _live:
                    spans.append(match.span())
                else:
                    stale = True  # a forgotten form could hide a kept one inside it
        if not stale:
            break
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    at = 0
    end = -1
    for start, stop in spans:
        if start < end:  # overlaps the masked run: widen it
            end = max(end, stop)
            continue
        if end >= 0:
            out.append(MASK)
            at = end
        out.append(text[at:start])
        end = stop
    out.append(MASK)
    out.append(text[end:])
    return "".join(out)


# --- patterns -------------------------------------------------------------------

# A signed URL: its query string is the credential, so all of it goes.
_SIGNED_QUERY = re.compile(
    r"\?(?=(?:[^\s\"'<>]*?&)?(?:X-Amz-Signature|X-Goog-Signature|Signature|sig|token)=)"
    r"[^\s\"'<>]*",
    re.IGNORECASE,
)
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic)(\s+|%20|\+)[A-Za-z0-9\-._~+/%]+=*", re.IGNORECASE)
_HEADER_VALUE = re.compile(
    r"(\b(?:authorization|proxy-authorization|x-api-key|api-key|apikey|cookie|set-cookie)"
    r"[\"']?\s*[:=,]\s*[\"']?)(?!\[redacted\])[^\"'\r\n,}\]]+",
    re.IGNORECASE,
)
_SECRET_KEYS = (
    r"access_token|refresh_token|id_token|client_secret|code|api_key|apikey|password|"
    r"token|secret|x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig"
)
# key=value in a query string or form body (also URL-encoded "=" as %3D).
_KV = re.compile(rf"(?<![\w-])((?:{_SECRET_KEYS})(?:=|%3D))(?!\[redacted\])[^&\s\"'<>#]+",
                 re.IGNORECASE)
# "key": "value" in JSON and key: value / key='value' in reprs.
_JSON = re.compile(
    rf"([\"']?(?<![\w-])(?:{_SECRET_KEYS})[\"']?\s*:\s*[\"'])(?!\[redacted\])[^\"']+",
    re.IGNORECASE)

# A run of digits with the separators people and URL encoders put between them.
_SEP = r"(?:[\s().\-+]|%20|%28|%29|%2[dD])"
# Atomic, and not glued to letters: a run inside a UUID or a hex digest is no number.
_PHONE = re.compile(
    r"(?<![\w%])((?:\+|%2[bB])\s*(?:%28)?|%28)?"  # "+", "%2B", "(" URL-encoded
    rf"(?>(\(?\d(?:{_SEP}{{0,3}}\d)+))(?![A-Za-z_])")
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_DOTTED_QUAD = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_TOKENS = re.compile(r"%[0-9A-Fa-f]{2}|.", re.DOTALL)


def _mask_phone(match: re.Match[str]) -> str:
    prefix, body = match.group(1) or "", match.group(2)
    if _DATE_LIKE.match(body) or _DOTTED_QUAD.match(body):
        return match.group(0)
    parts = _TOKENS.findall(body)
    digit_positions = [i for i, p in enumerate(parts) if len(p) == 1 and p.isdigit()]
    if not 7 <= len(digit_positions) <= 15:
        return match.group(0)
    keep = set(digit_positions[-4:])
    masked = "".join(
        "*" if (len(p) == 1 and p.isdigit() and i not in keep) else p for i, p in enumerate(parts))
    return prefix + masked


def redact(text: str) -> str:
    """``text`` with secrets, signed query strings and phone numbers masked."""
    if not text:
        return text
    text = _mask_secrets(text)
    text = _SIGNED_QUERY.sub("?" + MASK, text)
    text = _HEADER_VALUE.sub(lambda m: m.group(1) + MASK, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _KV.sub(lambda m: m.group(1) + MASK, text)
    text = _JSON.sub(lambda m: m.group(1) + MASK, text)
    return _PHONE.sub(_mask_phone, text)


# --- logging --------------------------------------------------------------------

_plain_formatter = logging.Formatter()


def _redact_record(record: logging.LogRecord) -> None:
    if getattr(record, "_callbridge_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep what we can show safely
        message = f"{record.msg!s} {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(_plain_formatter.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    setattr(record, "_callbridge_redacted", True)  # noqa: B010 - not a LogRecord field


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (args merged in) and traceback through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


_LOGGERS = (
    "callbridge",
    "httpx2",
    "httpcore2",
    "httpcore2.connection",
    "httpcore2.http11",
    "httpcore2.http2",
    "httpcore2.proxy",
    "httpcore2.socks",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
)
_PREFIXES = ("callbridge", "httpx2", "httpcore2", "uvicorn")
_installed = False
_install_lock = threading.Lock()
_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Redact every log record of the process. Safe to call more than once.

    A filter on a logger does not see records of its child loggers, and a
    handler added later (a test's capture handler) has no filter, so besides
    attaching :class:`RedactingFilter` to the root logger's handlers and to the
    ``callbridge``, ``httpx2``, ``httpcore2.*`` and ``uvicorn`` loggers, this
    wraps the log record factory so every record is redacted when it is made.
    """
    global _installed
    with _install_lock:
        for handler in logging.getLogger().handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
        names = set(_LOGGERS) | {
            name for name in logging.root.manager.loggerDict if name.startswith(_PREFIXES)}
        for name in sorted(names):
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


# pydantic's text for a validation error quotes each bad input ("input_value='Dana
# Whitfield'"); the same text may reach us inside another library's message.
_INPUT_VALUE = re.compile(r"input_value=.*?(?=, input_type=|\]\s*$|$)", re.MULTILINE)


def describe_error(exc: BaseException, *, limit: int = 500) -> str:
    """An exception as a message safe to keep: its type and redacted text.

    A pydantic ``ValidationError`` (a plugin reading an app's answer) is described
    by field locations and problems only: its own text quotes the input, such as a
    contact's name. Elsewhere any ``input_value=…`` is cut out.
    """
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(value)'}: {e['msg']}"
                    for e in exc.errors(include_input=False, include_url=False,
                                        include_context=False)[:10]]
        text = f"{type(exc).__name__}: {exc.title}: " + "; ".join(problems)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return _INPUT_VALUE.sub("input_value=[redacted]", redact(text))[:limit]
