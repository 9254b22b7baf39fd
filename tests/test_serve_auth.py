"""Operators of the operator API: bearer tokens from the settings, scoped to tenants
(issue 13 point 6), and the command that makes a token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from callbridge.cli import app as cli_app
from callbridge.errors import ConfigError
from callbridge.serve.auth import (
    ApiError,
    authenticate,
    guarded,
    require_operator,
    token_hash,
    token_instructions,
)
from callbridge.serve.metrics import Metrics
from callbridge.settings import Settings, SettingsSource, load_settings, parse_settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from typer.testing import CliRunner

ANN_TOKEN = "cbo_ann-token-for-tests-0123456789abcdef"
BOB_TOKEN = "cbo_bob-token-for-tests-0123456789abcdef"


def failures(metrics: Metrics) -> dict[str, float]:
    """The refusals counted, by reason, as the server's /metrics shows them."""
    out = {}
    for line in metrics.render().decode().splitlines():
        if line.startswith("callbridge_operator_auth_failures_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('reason="')[1].split('"')[0]] = float(value)
    return out


@dataclass
class Runtime:
    settings: SettingsSource


@dataclass
class State:
    runtime: Runtime
    metrics: Metrics


def settings(extra: dict[str, Any] | None = None) -> Settings:
    operators: dict[str, Any] = {
        "ann": {"token_sha256": token_hash(ANN_TOKEN), "tenants": ["acme"]},
        "bob": {"token_env": "BOB_OPERATOR_TOKEN", "tenants": "all"},
        **(extra or {}),
    }
    return parse_settings({"operators": operators, "tenants": {"acme": {}, "globex": {}}},
                          origin="test")


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> State:
    monkeypatch.setenv("BOB_OPERATOR_TOKEN", BOB_TOKEN)
    return State(Runtime(SettingsSource(None, default=settings())), Metrics())


@pytest.fixture
def client(state: State) -> TestClient:
    async def who(request: Request) -> Response:
        tenant = request.query_params.get("tenant")
        operator = await require_operator(request, state, tenant)
        return JSONResponse({"operator": operator.name})

    return TestClient(Starlette(routes=[Route("/who", guarded(who))]))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_operator_is_known_by_its_token_hash_or_by_a_token_in_the_environment(
        client: TestClient) -> None:
    assert client.get("/who", headers=bearer(ANN_TOKEN)).json() == {"operator": "ann"}
    assert client.get("/who", headers=bearer(BOB_TOKEN)).json() == {"operator": "bob"}
    assert client.get("/who?tenant=acme", headers=bearer(ANN_TOKEN)).status_code == 200


@pytest.mark.parametrize(("headers", "problem"), [
    ({}, "no operator token"),
    ({"Authorization": "Basic YW5uOnNlY3JldA=="}, "is not a bearer token"),
    (bearer("cbo_nobody-has-this-token-0123456789"), "no operator has this token"),
    (bearer(ANN_TOKEN[:-1]), "no operator has this token"),
])
def test_a_request_without_a_known_token_is_refused_with_401(
        client: TestClient, state: State, headers: dict[str, str], problem: str) -> None:
    answer = client.get("/who", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    error = answer.json()["error"]
    assert error["field"] == "authorization" and problem in error["problem"]
    assert "cbo_" not in answer.text  # the token sent is never echoed
    assert failures(state.metrics) == {"unauthenticated": 1.0}


def test_an_operator_asking_about_a_tenant_outside_its_scope_gets_403(
        client: TestClient, state: State) -> None:
    answer = client.get("/who?tenant=globex", headers=bearer(ANN_TOKEN))
    assert answer.status_code == 403
    assert answer.json() == {"error": {"field": "tenant", "problem":
                                       "this operator may not act for this tenant"}}
    assert failures(state.metrics) == {"forbidden_tenant": 1.0}
    # An operator for every tenant may ask about any.
    assert client.get("/who?tenant=globex", headers=bearer(BOB_TOKEN)).status_code == 200


def test_an_unset_token_variable_admits_nobody(client: TestClient,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOB_OPERATOR_TOKEN")
    assert client.get("/who", headers=bearer(BOB_TOKEN)).status_code == 401
    assert client.get("/who", headers=bearer("")).status_code == 401


def test_a_changed_settings_file_applies_to_the_next_request(tmp_path: Path) -> None:
    path = tmp_path / "callbridge.toml"
    _, lines = token_instructions("carol", ["acme"])
    path.write_text(lines)
    source = SettingsSource(path)
    token, lines = token_instructions("carol", None)
    path.write_text(lines + "\n# changed\n")
    operators = source.current().operators
    assert authenticate(operators, f"Bearer {token}").tenants is None


@pytest.mark.parametrize(("operator", "problem"), [
    ({"tenants": "all"}, "give exactly one of token_sha256 and token_env"),
    ({"token_env": "X", "token_sha256": "a" * 64, "tenants": "all"},
     "give exactly one of token_sha256 and token_env"),
    ({"token_sha256": "not-a-hash", "tenants": "all"}, "operators.ops.token_sha256"),
    ({"token_env": "X"}, "operators.ops.tenants"),
    ({"token_env": "X", "tenants": "acme"}, 'a list of tenant keys, or "all"'),
    ({"token_env": "X", "tenants": "all", "token": "cbo_secret-token-in-the-file"},
     "operators.ops.token"),
])
def test_bad_operator_settings_name_the_key(operator: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"operators": {"ops": operator}}, origin="callbridge.toml")
    assert problem in str(caught.value) and "secret-token" not in str(caught.value)


def test_operator_token_prints_a_token_and_the_lines_that_admit_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["operator-token", "front-desk", "--tenant", "acme",
                                          "--tenant", "globex"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("cbo_") and len(token) > 40
    assert token not in result.stderr  # the settings get its hash only
    lines = result.stderr[result.stderr.index("[operators.front-desk]"):]
    path = tmp_path / "callbridge.toml"
    path.write_text(lines)
    operators = load_settings(path).operators
    assert authenticate(operators, f"Bearer {token}") == authenticate(
        operators, f"bearer  {token}")
    assert operators["front-desk"].tenants == {"acme", "globex"}


def test_operator_token_refuses_a_bad_name() -> None:
    result = CliRunner().invoke(cli_app, ["operator-token", "no spaces"])
    assert result.exit_code == 2 and "name:" in result.stderr


def test_api_error_answers_json_naming_the_field() -> None:
    answer = ApiError(409, "delivery", "is logged").response()
    assert answer.status_code == 409
    assert answer.body == b'{"error":{"field":"delivery","problem":"is logged"}}'


def test_operator_token_needs_no_web_library() -> None:
    import subprocess
    import sys

    code = ("import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
            "from callbridge.cli import main; sys.argv = ['callbridge', 'operator-token', 'ops']\n"
            "main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cbo_") and "[operators.ops]" in done.stderr


def test_a_refusal_is_logged_without_the_path_or_the_token(
        state: State, caplog: pytest.LogCaptureFixture) -> None:
    async def one(request: Request) -> Response:
        await require_operator(request, state)
        return JSONResponse({})

    client = TestClient(Starlette(routes=[Route("/v1/events/{ref}/log", guarded(one),
                                                methods=["POST"])]))
    with caplog.at_level("WARNING", logger="callbridge.serve.auth"):
        assert client.post("/v1/events/+12125550142/log",
                           headers=bearer("cbo_wrong-token-000000000000000000")).status_code == 401
    assert "refused" in caplog.text
    assert "5550142" not in caplog.text and "cbo_" not in caplog.text
