"""Issue point 3: plugins found by entry point, validated one by one, routed by app."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from callbridge.capabilities import Capability, Declaration
from callbridge.errors import HookApiDeprecationWarning
from callbridge.hookspecs import hookimpl
from callbridge.models import Contact
from callbridge.plugins import LoadedPlugin, LoadError, PluginLoadError, Registry, discover


def declaring(name: str, *caps: Capability, api: str = "2.0") -> Any:
    @hookimpl
    def declare() -> Declaration:
        return Declaration(name=name, version="9.9", hook_api_version=api, capabilities=frozenset(caps))
    return declare


class Good:
    declare = staticmethod(declaring("good", Capability.CALLS, Capability.CONTACT_SEARCH_PHONE))

    @hookimpl
    async def log_call(self, ctx: Any, event: Any, target: Any) -> Any: ...

    @hookimpl
    async def find_contact(self, ctx: Any, party: Any) -> list[Contact]:
        return [Contact(id="good-1")]


def reason(obj: object) -> str:
    result = Registry().add(obj, distribution="dist-x", dist_version="1.2.3")
    assert isinstance(result, LoadError)
    assert "dist-x 1.2.3" in str(result)
    return result.reason


def test_a_consistent_plugin_loads_with_its_hooks() -> None:
    loaded = Registry().add(Good())
    assert isinstance(loaded, LoadedPlugin)
    assert loaded.hooks == ["find_contact", "log_call"]


def test_a_declared_capability_without_its_hook_is_refused() -> None:
    class NoSms(Good):
        declare = staticmethod(declaring("nosms", Capability.CALLS, Capability.CONTACT_SEARCH_PHONE, Capability.SMS))
    assert "declares sms but does not implement log_sms" in reason(NoSms())


def test_an_implemented_hook_without_its_capability_is_refused() -> None:
    class Extra(Good):
        @hookimpl
        async def find_matters(self, ctx: Any, contact: Any) -> list[Any]:
            return []
    assert "implements find_matters but declares no capability" in reason(Extra())


def test_a_misspelt_hook_name_is_refused() -> None:
    class Typo(Good):
        @hookimpl
        async def log_smss(self, ctx: Any, event: Any, target: Any) -> Any: ...
    assert "implements log_smss, which is not a callbridge hook; did you mean log_sms?" \
        in reason(Typo())


def test_a_name_near_no_hook_is_refused_without_a_guess() -> None:
    class Stray(Good):
        @hookimpl
        async def frobnicate(self, ctx: Any) -> Any: ...
    text = reason(Stray())
    assert "implements frobnicate, which is not a callbridge hook" in text
    assert "did you mean" not in text


def test_an_argument_the_spec_lacks_is_refused() -> None:
    class BadArgs(Good):
        @hookimpl
        async def log_call(self, ctx: Any, event: Any, target: Any, colour: Any) -> Any: ...
    assert "colour" in reason(BadArgs())


@pytest.mark.parametrize(("api", "ok"), [("2.0", True), ("2.1", True), ("3.0", False), ("2.2", False),
                                         ("0.9", False)])
def test_hook_api_version_rule_same_major_minor_not_above_host(api: str, ok: bool) -> None:
    class Versioned(Good):
        declare = staticmethod(declaring("v", Capability.CALLS, Capability.CONTACT_SEARCH_PHONE, api=api))
    result = Registry().add(Versioned())
    assert isinstance(result, LoadedPlugin) == ok
    if ok:
        assert isinstance(result, LoadedPlugin) and result.deprecations == ()
    else:
        assert isinstance(result, LoadError) and f"built for hook API {api}" in result.reason


@pytest.mark.parametrize("api", ["1.0", "1.7"])
def test_a_plugin_of_the_previous_major_loads_with_a_deprecation_warning(api: str) -> None:
    class Old(Good):
        declare = staticmethod(declaring("old", Capability.CALLS, Capability.CONTACT_SEARCH_PHONE, api=api))
    with pytest.warns(HookApiDeprecationWarning, match=f"built for hook API {api}"):
        result = Registry().add(Old())
    assert isinstance(result, LoadedPlugin)
    assert "migrating-to-2.0" in result.deprecations[0]


def test_the_old_log_without_contact_capability_means_every_kind_with_a_warning() -> None:
    class Old(Good):
        declare = staticmethod(declaring("old", Capability.CALLS, Capability.CONTACT_SEARCH_PHONE,
                                         Capability.LOG_WITHOUT_CONTACT))
    with pytest.warns(HookApiDeprecationWarning, match="without_contact"):
        result = Registry().add(Old())
    assert isinstance(result, LoadedPlugin)
    assert all(result.declaration.logs_without_contact(k) for k in ("call", "sms", "fax"))


def test_without_contact_is_per_event_kind() -> None:
    declaration = Declaration(name="x", version="1", hook_api_version="2.0",
                              capabilities=frozenset({Capability.CALLS, Capability.SMS}),
                              without_contact=frozenset({"call"}))
    assert declaration.logs_without_contact("call")
    assert not declaration.logs_without_contact("sms")


def test_a_declare_hook_that_raises_is_reported_not_fatal() -> None:
    class Raises(Good):
        @hookimpl
        def declare(self) -> Declaration:
            raise RuntimeError("boom")
    assert "declare() raised RuntimeError: boom" in reason(Raises())


def test_two_plugins_claiming_one_app_name_keeps_the_first() -> None:
    registry = Registry()
    registry.add(Good(), distribution="first")
    second = registry.add(Good(), distribution="second")
    assert isinstance(second, LoadError) and "already taken by first" in second.reason
    assert registry.plugins["good"].distribution == "first"


def test_entry_points_load_each_plugin_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLBRIDGE_PLUGINS", raising=False)
    registry = discover(strict=False)
    assert "notebook" in registry.plugins
    assert registry.plugins["notebook"].distribution == "callbridge-notebook"
    errors = {e.entry_point: e for e in registry.errors}
    assert errors["broken_import"].distribution == "callbridge-broken-example"
    assert errors["broken_import"].dist_version == "0.0.1"
    assert "ModuleNotFoundError" in errors["broken_import"].reason
    assert "log_cal, which is not a callbridge hook; did you mean log_call?" \
        in errors["broken_misspelt"].reason


def test_strict_mode_turns_a_load_error_into_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBRIDGE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="broken_misspelt"):
        discover()


def test_allow_and_deny_lists_choose_what_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "notebook")
    registry = discover(strict=True)
    assert list(registry.plugins) == ["notebook"] and registry.errors == []
    monkeypatch.delenv("CALLBRIDGE_PLUGINS")
    monkeypatch.setenv("CALLBRIDGE_DISABLE_PLUGINS", "broken_import,broken_misspelt,notebook")
    registry = discover(strict=True)
    assert "notebook" not in registry.plugins and registry.errors == []


def test_sync_plugins_run_in_a_worker_thread_and_fewer_arguments_are_fine() -> None:
    seen: dict[str, Any] = {}

    class Sync:
        declare = staticmethod(declaring("sync", Capability.CALLS, Capability.CONTACT_SEARCH_PHONE))

        @hookimpl
        def find_contact(self, party: Any) -> list[Contact]:  # takes no ctx: allowed
            seen["thread"] = threading.current_thread().name
            seen["party"] = party
            return [Contact(id="s-1")]

        @hookimpl
        def log_call(self, ctx: Any, event: Any, target: Any) -> Any: ...

    from tests.helpers import call_hook
    result = call_hook(Sync(), "find_contact", party="P")
    assert result == [Contact(id="s-1")]
    assert seen["party"] == "P" and seen["thread"] != threading.main_thread().name


def test_callbridge_plugins_shows_what_a_plugin_uses_that_is_deprecated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from callbridge import plugins
    from callbridge.cli import app
    from typer.testing import CliRunner

    class Old(Good):
        declare = staticmethod(declaring("old", Capability.CALLS, Capability.CONTACT_SEARCH_PHONE,
                                         api="1.0"))

    registry = Registry()
    with pytest.warns(HookApiDeprecationWarning):
        registry.add(Old(), distribution="callbridge-old", dist_version="1.0.0")
    monkeypatch.setattr(plugins, "discover", lambda strict=None: registry)  # no entry points
    shown = json.loads(CliRunner().invoke(app, ["plugins", "--json"]).stdout)
    assert "built for hook API 1.0" in shown["plugins"][0]["deprecations"][0]
    table = CliRunner().invoke(app, ["plugins"])
    assert "deprecated:" in table.output and "old: built for hook API 1.0" in table.output
