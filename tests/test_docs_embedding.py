"""The embedding page's example runs as written, against the notebook sandbox."""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_config

PAGE = Path(__file__).resolve().parents[1] / "docs" / "embedding.md"


def test_the_embedding_example_logs_a_call_and_prints_its_outcome(
        tmp_path: Path, notebook: Any, secret_key: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    write_config(tmp_path / "callbridge.toml", notebook.url)
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "embed.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="__main__")
    assert capsys.readouterr().out.split("\n")[0].startswith("crm logged None ['l")
    assert len(notebook.state.logs) == 1
