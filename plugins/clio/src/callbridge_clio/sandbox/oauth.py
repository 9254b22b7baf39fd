"""The sandbox's OAuth 2.0 endpoints, as Clio's: authorization code and refresh token.

There is no login page: ``/oauth/authorize`` approves at once for the authorised user
and redirects with a code, so ``curl -i`` (no browser) gets one from the Location
header; ``/oauth/token`` exchanges it with the documented client id and secret.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from callbridge_clio.sandbox.state import SandboxState


def routes(st: SandboxState) -> list[Route]:

    async def authorize(request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != st.client_id or q.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request", "error_description":
                                 "client_id or response_type is wrong"}, status_code=400)
        if not q.get("redirect_uri"):
            return JSONResponse({"error": "invalid_request",
                                 "error_description": "redirect_uri is required"}, status_code=400)
        if st.authorised_user is None:
            return JSONResponse({"error": "access_denied", "error_description":
                                 "the sandbox has no user to approve with; seed one"},
                                status_code=400)
        code = secrets.token_urlsafe(16)
        st.codes[code] = (st.authorised_user, q["redirect_uri"])
        query = urlencode({"code": code, "state": q.get("state", "")})
        return RedirectResponse(f"{q['redirect_uri']}?{query}", status_code=302)

    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("client_id") != st.client_id or form.get("client_secret") != st.client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            entry = st.codes.pop(str(form.get("code")), None)
            if entry is None or entry[1] != form.get("redirect_uri"):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            return JSONResponse(st.issue_token(entry[0]))
        if grant == "refresh_token":
            uid = st.refresh_tokens.get(str(form.get("refresh_token")))
            if uid is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            issued = st.issue_token(uid)
            # Clio keeps the refresh token: the answer carries none.
            st.refresh_tokens.pop(issued.pop("refresh_token"))
            return JSONResponse(issued)
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

    return [Route("/oauth/authorize", authorize), Route("/oauth/token", token, methods=["POST"])]
