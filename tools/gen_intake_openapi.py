"""Write docs/intake-openapi.json, the intake's OpenAPI document, from the code.

Run after changing the events' models or the intake: `python tools/gen_intake_openapi.py`.
tests/test_serve_openapi.py fails when the file and the code disagree.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "intake-openapi.json"

if __name__ == "__main__":
    from callbridge.serve.openapi import render

    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}")
