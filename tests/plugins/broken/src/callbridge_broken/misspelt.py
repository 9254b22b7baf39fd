"""Declares calls but spells the hook ``log_cal``."""

from callbridge.capabilities import Capability, Declaration
from callbridge.hookspecs import hookimpl


@hookimpl
def declare() -> Declaration:
    return Declaration(name="misspelt", version="0.0.1", hook_api_version="1.0",
                       capabilities=frozenset({Capability.CALLS}))


@hookimpl
async def log_cal(ctx, event, target):  # type: ignore[no-untyped-def]
    raise AssertionError("never called")
