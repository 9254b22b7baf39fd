"""The sandbox's OAuth 2.0 endpoints (Smokeball's Cognito host) and its storage origin."""

from __future__ import annotations

import base64
import hmac
import secrets
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from callbridge_smokeball.sandbox.state import SandboxState


def oauth_routes(st: SandboxState) -> list[Route]:
    """``/oauth2/token``, ``/oauth2/authorize`` and the pre-signed ``PUT /_storage/{key}``."""

    async def storage(request: Request) -> Response:
        """The pre-signed PUT: S3 refuses a signature that does not match the headers."""
        if st.storage_fault is not None:
            return Response("<Error><Code>ServiceUnavailable</Code></Error>",
                            status_code=st.storage_fault)
        record = st.data["files"].get(request.path_params["key"])
        given = request.query_params.get("X-Amz-Signature", "")
        if record is None or not hmac.compare_digest(given, record.get("_signature", "")):
            return Response("<Error><Code>AccessDenied</Code></Error>", status_code=403)
        if request.headers.get("content-type") or request.headers.get("authorization") \
                or request.headers.get("x-api-key"):
            return Response("<Error><Code>SignatureDoesNotMatch</Code></Error>", status_code=403)
        st.uploads[record["id"]] = await request.body()
        record["isUploaded"] = True
        return Response(status_code=200)

    # --- OAuth 2.0 (Cognito's endpoints) ---------------------------------------------------

    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        if client_id != st.client_id or secret != st.client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        grant = form.get("grant_type")
        st.token_requests.append({"grant": grant, "basic": basic.lower().startswith("basic ")})
        if grant == "client_credentials":
            return JSONResponse(st.issue_token(refresh=False, grant=grant))
        if grant == "authorization_code":
            if st.codes.pop(form.get("code", ""), None) is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            return JSONResponse(st.issue_token())
        if grant == "refresh_token":
            if form.get("refresh_token") not in st.refresh_tokens:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            answer = st.issue_token(refresh=False)
            return JSONResponse(answer)
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

    async def authorize(request: Request) -> Response:
        """Approves at once (no login page): a token to be had without a browser."""
        q = request.query_params
        if q.get("client_id") != st.client_id or not q.get("redirect_uri"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_hex(8)
        st.codes[code] = {}
        sep = "&" if "?" in q["redirect_uri"] else "?"
        extra = {"code": code, **({"state": q["state"]} if q.get("state") else {})}
        return RedirectResponse(f"{q['redirect_uri']}{sep}{urlencode(extra)}", status_code=302)

    return [Route("/oauth2/token", token, methods=["POST"]),
            Route("/oauth2/authorize", authorize, methods=["GET"]),
            Route("/_storage/{key}", storage, methods=["PUT"])]
