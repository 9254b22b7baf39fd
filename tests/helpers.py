"""Small builders shared by the host tests."""

from __future__ import annotations

import asyncio
from typing import Any

from callbridge.capabilities import Declaration
from callbridge.context import HookContext
from callbridge.facade import Facade
from callbridge.hookspecs import hookimpl
from callbridge.plugins import LoadedPlugin, Registry
from callbridge.testing import make_context


class Bare:
    """A plugin that declares an app name and nothing else: a context's owner in tests
    whose hooks make no request."""

    def __init__(self, name: str = "app") -> None:
        self.name = name

    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(name=self.name, version="1", hook_api_version="2.0",
                           capabilities=frozenset())


def bare_context(app: str = "app", **kwargs: Any) -> HookContext:
    """A hook context for the app ``app`` (the host's factory, in-memory services)."""
    return make_context(Bare(app), **kwargs)


def call_hook(plugin: object, hook: str, **kwargs: Any) -> Any:
    registry = Registry()
    loaded = registry.add(plugin)
    assert isinstance(loaded, LoadedPlugin), loaded
    hooks = Facade(registry).for_plugin(loaded.name)

    async def go() -> Any:
        return await getattr(hooks, hook)(bare_context(loaded.name), **kwargs)
    return asyncio.run(go())
