"""The sender example of docs/serve.md, run as it is written against a real server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from callbridge.runtime import load
from callbridge.serve.app import build_app, make_state

from tests.conftest import Notebook, write_config
from tests.serving import KEY, OLD_KEY, SOURCES

PAGE = Path(__file__).resolve().parents[1] / "docs" / "serve.md"


def sender_example() -> tuple[str, str]:
    """The page's Python block: the definition of ``send``, and the call that follows."""
    block = next(b for b in re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
                 if "def send(" in b)
    at = block.index("\nsend(")
    return block[:at], block[at:]


def test_the_sender_example_is_acknowledged_and_stored(
        tmp_path: Path, notebook: Notebook, secret_key: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from callbridge.faults import serve_in_thread

    monkeypatch.setenv("TEST_PBX_KEY", KEY)
    monkeypatch.setenv("TEST_PBX_OLD_KEY", OLD_KEY)
    state = make_state(load(write_config(tmp_path / "callbridge.toml", notebook.url,
                                         extra=SOURCES)), worker=False)
    definition, call = sender_example()
    scope: dict[str, Any] = {}
    exec(definition, scope)
    call = call.replace('"https://callbridge.example.com', 'url + "').replace(
        '"the source\'s key"', "key")
    with serve_in_thread(build_app(state)) as url:
        scope.update(url=url, key=KEY)
        exec(f"answer = {call.strip()}", scope)
    assert scope["answer"] == {"received": 1, "events": [
        {"id": "call-7781", "kind": "call", "result": "new"}]}
    assert state.engine.ledger.find_event("acme", "pbx", "call", "call-7781") is not None


async def test_the_asgi_example_builds_an_app_that_answers(
        tmp_path: Path, notebook: Notebook, secret_key: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx2

    write_config(tmp_path / "callbridge.toml", notebook.url)
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    (example,) = [b for b in blocks if "build_app(make_state(" in b]
    scope: dict[str, Any] = {}
    exec(example, scope)
    transport = httpx2.ASGITransport(app=scope["app"])
    async with httpx2.AsyncClient(transport=transport, base_url="http://serve.test") as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
