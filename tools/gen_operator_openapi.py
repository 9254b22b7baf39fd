"""Write docs/operator-openapi.json, the operator API's OpenAPI document, from the code.

Run after changing the operator API's answers: `python tools/gen_operator_openapi.py`.
tests/test_serve_operator_openapi.py fails when the file and the code disagree.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "operator-openapi.json"

if __name__ == "__main__":
    from callbridge.serve.operator_models import render

    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}")
