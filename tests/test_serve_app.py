"""The server's skeleton: health, readiness, metrics, JSON errors, settings kept when a
change does not read, the serve extra's message, and no web server on the runtime path."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
import sqlalchemy as sa
from callbridge.runtime import load
from callbridge.serve.app import build_app, make_state
from callbridge.serve.auth import token_hash
from callbridge.serve.server import LastGoodSettings
from callbridge.serve.state import ServerState

from tests.conftest import Notebook, write_config

#: An operator for every tenant: /metrics asks for one (serve.metrics_access).
MONITOR_TOKEN = "cbo_monitoring-token-for-tests-0123456789"
MONITOR = f"""
[operators.monitor]
token_sha256 = "{token_hash(MONITOR_TOKEN)}"
tenants = "all"
"""
AS_MONITOR = {"Authorization": f"Bearer {MONITOR_TOKEN}"}


@pytest.fixture
def state(tmp_path: Path, notebook: Notebook, secret_key: str) -> ServerState:
    rt = load(write_config(tmp_path / "callbridge.toml", notebook.url, extra=MONITOR))
    rt.settings = LastGoodSettings(rt.settings.path, plugin_models=rt.settings.plugin_models)
    return make_state(rt, worker=False)


@pytest.fixture
async def client(state: ServerState) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=build_app(state))
    async with httpx2.AsyncClient(transport=transport, base_url="http://serve.test") as c:
        yield c
    await state.engine.aclose()


async def test_healthz_answers_and_readyz_checks_the_ledger_and_its_migrations(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"ledger": "ok", "migrations": "current", "settings": "ok",
                                      "sources": "ok"}
    with state.engine.ledger.engine.begin() as conn:  # the schema one migration behind
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'older'"))
    behind = await client.get("/readyz")
    assert behind.status_code == 503
    assert behind.json()["problems"] == ["the ledger's schema is not at the newest migration"]


async def test_readyz_is_not_ready_while_shutting_down(client: httpx2.AsyncClient,
                                                       state: ServerState) -> None:
    state.extra["stopping"] = True
    answer = await client.get("/readyz")
    assert answer.status_code == 503 and answer.json()["problems"] == ["shutting down"]
    assert (await client.get("/healthz")).status_code == 200


async def test_metrics_are_in_the_prometheus_text_format_with_deliveries_by_state(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    from callbridge.events import parse_event

    event = parse_event({"kind": "sms", "id": "s-1", "tenant": "acme", "direction": "inbound",
                         "external": {"number": "+1 212 555 0142"}, "body": "hello",
                         "sent_at": "2026-03-02T09:00:00+00:00"})
    await state.engine.ingest(event)
    state.metrics.inc("events_received", tenant="acme", source="default", kind="sms", result="new")
    answer = await client.get("/metrics", headers=AS_MONITOR)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    assert 'callbridge_deliveries{app="crm",reason="",status="pending"} 1.0' in text
    assert ('callbridge_events_received_total{kind="sms",result="new",source="default",'
            'tenant="acme"} 1.0') in text
    for name in ("callbridge_hook_seconds", "callbridge_app_429_total",
                 "callbridge_outcomes_total", "callbridge_requests_refused_total",
                 "callbridge_ack_seconds"):
        assert f"# TYPE {name.removesuffix('_total')}" in text


async def test_metrics_count_hook_calls_and_outcomes_of_the_worker(
        client: httpx2.AsyncClient, state: ServerState, notebook: Notebook) -> None:
    from callbridge.events import parse_event

    notebook.state.add_contact("Ann", ["212-555-0142"])
    notebook.faults.fail_next = [(429, 0.01)]  # the app's first answer: too many requests
    await state.engine.ingest(parse_event({
        "kind": "sms", "id": "s-2", "tenant": "acme", "direction": "inbound",
        "external": {"number": "+1 212 555 0142"}, "body": "hi",
        "sent_at": "2026-03-02T09:00:00+00:00"}))
    assert await state.engine.run_until_idle() == 1
    text = (await client.get("/metrics", headers=AS_MONITOR)).text
    assert 'callbridge_outcomes_total{app="crm",reason="",status="logged"} 1.0' in text
    assert 'callbridge_hook_seconds_count{app="crm",hook="log_sms",result="ok"} 1.0' in text
    assert 'callbridge_deliveries{app="crm",reason="",status="logged"} 1.0' in text
    assert 'callbridge_app_429_total{bucket="api",plugin="notebook"} 1.0' in text


async def test_unknown_paths_and_methods_answer_a_json_error(client: httpx2.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"field": "(path)", "problem": "no such endpoint"}}
    wrong = await client.post("/healthz")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["field"] == "(method)"


def test_a_settings_change_that_does_not_read_keeps_the_last_good_settings(
        tmp_path: Path, state: ServerState) -> None:
    source = state.runtime.settings
    path = source.path
    assert path is not None
    good = path.read_text()
    path.write_text(good + "\n[serve]\nport = -1\n")
    source.refresh()  # as the server does, off its event loop
    assert source.current().serve.port == 8080  # the last good settings stay in use
    assert "serve.port" in (source.error or "")
    path.write_text(good + "\n[serve]\nport = 9000\n")
    assert source.current().serve.port == 8080  # nothing is read on the event loop
    source.refresh()
    assert source.current().serve.port == 9000 and source.error is None


def test_serve_without_the_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from callbridge.cli import app
    from typer.testing import CliRunner

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 1
    assert "pip install 'callbridge[serve]'" in result.output and "uvicorn" in result.output


@pytest.mark.parametrize("command", [["demo", "clio"], ["sandbox", "clio"]])
def test_a_sandbox_or_demo_without_the_extra_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    from callbridge.cli import app
    from typer.testing import CliRunner

    monkeypatch.setitem(sys.modules, "starlette", None)  # as if not installed
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    assert "[sandbox]" in result.output or "callbridge[serve]" in result.output
    assert "starlette" in result.output


def test_the_runtime_path_imports_no_web_server() -> None:
    code = ("import sys, callbridge.cli, callbridge.engine, callbridge.ingesting, "
            "callbridge_clio, callbridge_hubspot, callbridge_smokeball\n"
            "from callbridge.plugins import discover; discover()\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'starlette', 'uvicorn', 'prometheus_client', 'jinja2', 'multipart'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
