"""Write docs/hooks.md from the hook specs' signatures and docstrings.

Run after changing core/callbridge/hookspecs.py: `python tools/gen_hook_docs.py`.
tests/test_docs.py fails when the page and the specs disagree.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def signature(name: str) -> str:
    from callbridge import hookspecs

    fn = getattr(hookspecs, name)
    prefix = "async def" if inspect.iscoroutinefunction(fn) else "def"
    return f"{prefix} {name}{inspect.signature(fn)}"


def render() -> str:
    from callbridge import HOOK_API_VERSION, hookspecs

    names = [*hookspecs.FREE_HOOKS[:2], *hookspecs.ROUTED_HOOKS, *hookspecs.FREE_HOOKS[2:]]
    out = [
        "# Hook reference",
        "",
        f"Hook API version {HOOK_API_VERSION}. Generated from `core/callbridge/hookspecs.py` by "
        "`python tools/gen_hook_docs.py`; `tests/test_docs.py` checks it is current.",
        "",
        inspect.cleandoc(hookspecs.__doc__ or ""),
        "",
    ]
    for name in names:
        doc = inspect.cleandoc(getattr(hookspecs, name).__doc__ or "")
        out += [f"## `{name}`", "", "```python", signature(name), "```", "", doc, ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "core"))
    (ROOT / "docs" / "hooks.md").write_text(render())
    print("wrote docs/hooks.md")
