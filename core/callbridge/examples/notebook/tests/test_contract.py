"""The notebook plugin's contract tests: the kit's standard suite, from one call.

Replays the cassettes beside this file. To re-record one, delete it and run
``CALLBRIDGE_RECORD_MODE=once python -m pytest <this folder>``: it is recorded
against the notebook sandbox, presented as https://notebook.example.com.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette

import callbridge.examples.notebook as notebook
from callbridge.examples.notebook.sandbox import NotebookState, create_app
from callbridge.models import AppUser
from callbridge.testing import Row, Scenarios, contract_suite


def seeded_sandbox(clock: Any = None) -> Starlette:
    """The notebook as the scenarios expect it (ids are given out in this order)."""
    state = NotebookState()
    ann = state.add_contact("Ann Example", ["+1 212-555-0142"], ["ann@acme.example"])  # c1
    state.add_matter(ann, "Ann Example: lease review")  # m2
    bob = state.add_contact("Bob Example", ["(646) 555-0101"])  # c3, no matters
    cy = state.add_contact("Cy Example", ["+12125550177"])  # c4
    state.add_matter(cy, "Cy Example: purchase")  # m5
    state.add_matter(cy, "Cy Example: estate")  # m6
    state.add_user("Dana Staff", "dana@acme.example")  # u7
    assert (ann, bob, cy) == ("c1", "c3", "c4")
    return create_app(state, clock=clock)


SCENARIOS = Scenarios(
    known_number="+12125550142", unknown_number="+12125550199", known_email="ann@acme.example",
    known_user_email="dana@acme.example",
    contact_one_matter="c1", contact_no_matters="c3", contact_several_matters="c4",
)

SETTINGS = {"base_url": "https://notebook.example.com", "auth": "bearer"}

ROWS = [
    Row("user-by-email", "find_user", {"email": "dana@acme.example", "extension": None},
        expect=lambda user: isinstance(user, AppUser) and user.id == "u7"),
    Row("user-unknown", "find_user", {"email": "nobody@acme.example", "extension": None},
        expect=None),
    Row("default-user", "pick_default_user", {}, expect=lambda user: user.name == "Dana Staff"),
]

TestNotebook = contract_suite(
    plugin=notebook, settings=SETTINGS, cassettes=Path(__file__).parent / "cassettes",
    scenarios=SCENARIOS, extra_rows=ROWS, sandbox=seeded_sandbox)
