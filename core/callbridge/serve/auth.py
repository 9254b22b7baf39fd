"""Operators: who may call the operator API, and for which tenants.

An operator is named in the settings (``[operators.NAME]``) with a bearer token and
the tenants it may act for. The file never holds the token itself: either its
SHA-256 (``token_sha256``, as ``callbridge operator-token`` prints it) or the name
of an environment variable holding it (``token_env``). A request carries the token
as ``Authorization: Bearer <token>``; its hash is compared with every operator's in
constant time, all of them each time, so the time taken says nothing about which
one (if any) came close.

:func:`require_operator` is what every operator endpoint calls first: it returns
the :class:`Operator`, or raises :class:`ApiError` (401: no token, or one no
operator has; 403: the operator may not act for the tenant asked about). Every
refusal is a JSON error naming the field and the problem, never the value sent.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callbridge.serve.tokens import TOKEN_PREFIX, new_token, token_hash, token_instructions
from callbridge.settings_serve import OperatorSettings
from callbridge.settings_source import secret_variable

__all__ = [
    "EXCEPTION_HANDLERS",
    "TOKEN_PREFIX",
    "ApiError",
    "Operator",
    "authenticate",
    "authorise",
    "error_response",
    "guarded",
    "new_token",
    "require_metrics_reader",
    "require_operator",
    "token_hash",
    "token_instructions",
]

log = logging.getLogger("callbridge.serve.auth")

#: Counted in the server's metrics (``callbridge_operator_auth_failures_total``), by
#: ``reason``, for each refused request.
FAILURES_METRIC = "operator_auth_failures"


@dataclass(frozen=True)
class Operator:
    """An authenticated operator: its name and the tenants it may act for (None: all)."""

    name: str
    tenants: frozenset[str] | None

    def may(self, tenant: str) -> bool:
        """Whether this operator may read and act on ``tenant``'s events."""
        return self.tenants is None or tenant in self.tenants


class ApiError(Exception):
    """A request refused: ``status`` (4xx), the ``field`` at fault and the ``problem``,
    answered as ``{"error": {"field": ..., "problem": ...}}``."""

    def __init__(self, status: int, field: str, problem: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{field}: {problem}")
        self.status = status
        self.field = field
        self.problem = problem
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return error_response(self.status, self.field, self.problem, self.headers)


def error_response(status: int, field: str, problem: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error every endpoint of the server answers with."""
    return JSONResponse({"error": {"field": field, "problem": problem}}, status_code=status,
                        headers=dict(headers or {}))


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


#: For ``Starlette(exception_handlers=...)``: an :class:`ApiError` raised anywhere in
#: an endpoint becomes its JSON answer.
EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    ApiError: _api_error}


Endpoint = Callable[[Request], Awaitable[Response]]


def guarded(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` answering an :class:`ApiError` it raises as its JSON error (so it
    does so in any application, with or without :data:`EXCEPTION_HANDLERS`)."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            return exc.response()

    run.__name__ = getattr(endpoint, "__name__", "endpoint")
    run.__doc__ = endpoint.__doc__
    return run


_UNAUTHORISED = {"WWW-Authenticate": 'Bearer realm="callbridge"'}
_BEARER = re.compile(r"^Bearer[ ]+([!-~]{1,512})[ ]*$", re.IGNORECASE)


def _presented(authorization: str | None) -> str:
    if not authorization:
        raise ApiError(401, "authorization",
                       "no operator token: send it as 'Authorization: Bearer <token>'",
                       _UNAUTHORISED)
    match = _BEARER.match(authorization)
    if match is None:
        raise ApiError(401, "authorization",
                       "is not a bearer token: send 'Authorization: Bearer <token>'",
                       _UNAUTHORISED)
    return match.group(1)


def _expected(settings: OperatorSettings, environ: Mapping[str, str] | None) -> bytes | None:
    if settings.token_sha256 is not None:
        return settings.token_sha256.encode()
    name = settings.token_env or ""
    value = secret_variable(name) if environ is None else environ.get(name)
    return token_hash(value).encode() if value else None


def authenticate(operators: Mapping[str, OperatorSettings], authorization: str | None, *,
                 environ: Mapping[str, str] | None = None) -> Operator:
    """The operator whose token the ``Authorization`` header carries; :class:`ApiError`
    (401) when there is none, or no operator has that token."""
    presented = token_hash(_presented(authorization)).encode()
    env = environ
    found: tuple[str, OperatorSettings] | None = None
    for name, settings in operators.items():  # every one, every time: no early exit
        expected = _expected(settings, env)
        same = hmac.compare_digest(presented, expected or b"\0" * 64)
        if same and expected is not None and found is None:
            found = (name, settings)
    if found is None:
        raise ApiError(401, "authorization", "no operator has this token", _UNAUTHORISED)
    name, settings = found
    return Operator(name=name, tenants=settings.tenants)


class AuthState(Protocol):
    """What :func:`require_operator` needs of the server's state."""

    @property
    def runtime(self) -> Any: ...


def _count_failure(state: Any, reason: str) -> None:
    metrics = getattr(state, "metrics", None)
    inc = getattr(metrics, "inc", None)
    if callable(inc):
        inc(FAILURES_METRIC, reason=reason)


async def require_operator(request: Request, state: AuthState,
                           tenant: str | None = None) -> Operator:
    """The operator making ``request``, allowed to act for ``tenant`` when one is named.

    Raises :class:`ApiError`: 401 without a token or with one no operator has (the
    answer carries ``WWW-Authenticate: Bearer``); 403 when the operator's tenants do
    not include ``tenant``. Each refusal is counted in the server's metrics
    (``callbridge_operator_auth_failures_total{reason=...}``) when it has them.
    """
    operators = state.runtime.settings.current().operators
    try:
        operator = authenticate(operators, request.headers.get("authorization"))
    except ApiError:
        _count_failure(state, "unauthenticated")
        # Not the path: an event's id in it may be a phone number.
        log.warning("operator API: a %s request without a valid token was refused",
                    request.method)
        raise
    if tenant is not None:
        authorise(state, operator, tenant)
    return operator


async def require_metrics_reader(request: Request, state: AuthState) -> Operator | None:
    """Who may read ``/metrics`` (the metrics name every tenant): with
    ``serve.metrics_access = "operator"`` (the default) an operator for every tenant,
    else (``"open"``) anyone. Raises :class:`ApiError` (401/403) as
    :func:`require_operator` does."""
    serve = getattr(state.runtime.settings.current(), "serve", None)
    if getattr(serve, "metrics_access", "operator") == "open":
        return None
    operator = await require_operator(request, state)
    if operator.tenants is not None:
        _count_failure(state, "forbidden_tenant")
        raise ApiError(403, "authorization", "the metrics cover every tenant: this needs an "
                       'operator whose tenants are "all"')
    return operator


def authorise(state: AuthState, operator: Operator, tenant: str) -> None:
    """Raise :class:`ApiError` (403, counted) unless ``operator`` may act for ``tenant``:
    for a tenant learnt after authentication (the tenant of an event asked for by id)."""
    if not operator.may(tenant):
        _count_failure(state, "forbidden_tenant")
        raise ApiError(403, "tenant", "this operator may not act for this tenant")
