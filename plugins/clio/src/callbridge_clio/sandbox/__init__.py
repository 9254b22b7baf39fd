"""An emulator of the subset of Clio Manage API v4 the plugin uses, as an ASGI app.

It answers as Clio's published API reference specifies: the ``{"data": ...}``
envelope, ``fields`` selection (an unknown field is a 400; every field the document
lists for a resource is known), cursor paging with ``meta.paging.next`` URLs on the
sandbox's own host (only for lists ordered by ``id(asc)``), OAuth 2.0 (authorization
code and refresh token), ``401 invalid_token``, ``410 Gone`` for an invalid
``X-API-VERSION``, ``X-RateLimit-*`` headers on every answer and a per-token limit
(50 a minute) with 429 and ``Retry-After``, enum checks, the three-step document upload
with S3-like pre-signed storage on an origin of its own, ``external_properties``
filters, and a 422 for a Person without names. State is in memory;
:class:`SandboxState` seeds it. Wrapped in the host's
:class:`~callbridge.faults.FaultInjector` for latency, 429s, 5xx and dropped
connections.

Needs the ``sandbox`` extra (``pip install 'callbridge-clio[sandbox]'``). Run it with
``callbridge sandbox clio`` (see :mod:`callbridge_clio.sandbox.serve`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from callbridge.clock import Clock
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callbridge_clio.sandbox import documents, oauth, records, webhooks
from callbridge_clio.sandbox.common import Handler, Refused, error
from callbridge_clio.sandbox.fields import DEFAULT_VERSION, VERSION, FieldsError, text_matches
from callbridge_clio.sandbox.state import CLIENT_ID, CLIENT_SECRET, SandboxState

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "SandboxState", "create_app", "dump", "text_matches"]


def _api_wrapper(st: SandboxState) -> Any:
    def unauthorised() -> JSONResponse:
        return JSONResponse({"error": "invalid_token", "error_description":
                             "The access token provided is expired, revoked, malformed or invalid "
                             "for other reasons."}, status_code=401)

    def api(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            version = request.headers.get("x-api-version")
            st.requests.append({"method": request.method, "path": request.url.path,
                                "query": dict(request.query_params), "api_version": version,
                                "host": request.headers.get("host")})
            header = request.headers.get("authorization", "")
            token = header[7:] if header.lower().startswith("bearer ") else ""
            admitted, rate = st.admit(token)
            if not admitted:
                answer: Response = error(429, "RateLimited", "Rate limit exceeded. Retry later.")
            elif version is not None and not VERSION.match(version):
                answer = error(410, "Gone", "The requested API version is invalid or no longer "
                                            "supported.")
            elif st.tokens.get(token, -1.0) < st.unix():
                answer = unauthorised()
            else:
                try:
                    answer = await handler(request)
                    answer.headers["X-API-VERSION"] = version or DEFAULT_VERSION
                except FieldsError as exc:
                    answer = error(400, "BadRequest", str(exc))
                except Refused as exc:
                    answer = error(exc.status, exc.kind, exc.message)
                except KeyError:
                    answer = error(404, "RecordNotFound", "The record could not be found.")
                except json.JSONDecodeError:
                    answer = error(400, "BadRequest", "The request body is not JSON.")
            answer.headers.update(rate)
            return answer
        return wrapped

    return api


class _ByOrigin:
    """One ASGI app for two origins: the storage's host gets the storage, any other the API."""

    def __init__(self, st: SandboxState, api: Starlette, storage: Starlette) -> None:
        self.st, self.api, self.storage = st, api, storage
        self.state = api.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host == urlsplit(self.st.storage_host).netloc:
                await self.storage(scope, receive, send)
                return
        await self.api(scope, receive, send)


def create_app(state: SandboxState | None = None, *, faults: bool = True,
               clock: Clock | None = None) -> Any:
    """The sandbox as an ASGI app (wrapped in the fault injector unless ``faults=False``).

    ``app.state.clio`` (or ``.app.state.clio`` through the injector) is the SandboxState.
    Requests whose Host is the storage origin's reach the storage; the others the API.
    ``clock`` (default: the state's) drives the sandbox and the fault injector alike.
    """
    from callbridge.faults import FaultInjector

    st = state or SandboxState()
    if clock is not None:
        st.clock = clock
    api = _api_wrapper(st)
    api_app = Starlette(routes=[*records.routes(st, api), *documents.routes(st, api),
                                *webhooks.routes(st, api), *oauth.routes(st)])
    api_app.state.clio = st
    app = _ByOrigin(st, api_app, Starlette(routes=documents.storage_routes(st)))
    if not faults:
        return app
    injector = FaultInjector(app, clock=st.clock)
    injector.state = st  # type: ignore[attr-defined]
    return injector


def dump(state: SandboxState) -> str:
    """The sandbox's records as JSON, for debugging a test."""
    return json.dumps({"contacts": state.contacts, "matters": state.matters,
                       "communications": state.communications, "activities": state.activities,
                       "documents": state.documents, "folders": state.folders},
                      indent=2, default=str)
