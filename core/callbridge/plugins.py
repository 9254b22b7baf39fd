"""Finding, loading and validating plugins.

Each entry point of the ``callbridge.plugins`` group is loaded and validated on
its own, in a scratch plugin manager: an import error, a misspelt hook name, a
hook implemented but not declared (or declared but not implemented), a bad
declaration or an incompatible hook API version is recorded as a
:class:`LoadError` naming the distribution and its version, and blocks that
plugin alone. ``CALLBRIDGE_STRICT_PLUGINS=1`` turns any load error into an
exception (for CI). ``CALLBRIDGE_PLUGINS`` (allow list) and
``CALLBRIDGE_DISABLE_PLUGINS`` (deny list) take comma-separated entry point
names.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
from pydantic import ValidationError
from stevedore import ExtensionManager, NamedExtensionManager

from callbridge import HOOK_API_VERSION, hookspecs
from callbridge.capabilities import REQUIRED_HOOKS, Capability, Connection, Declaration, api_status
from callbridge.errors import CallbridgeError, HookApiDeprecationWarning

log = logging.getLogger("callbridge.plugins")

GROUP = "callbridge.plugins"
ENV_STRICT = "CALLBRIDGE_STRICT_PLUGINS"
ENV_ALLOW = "CALLBRIDGE_PLUGINS"
ENV_DENY = "CALLBRIDGE_DISABLE_PLUGINS"
UNKNOWN_DISTRIBUTION = ("(unknown distribution)", "-")


class PluginLoadError(CallbridgeError):
    """Raised in strict mode when any plugin failed to load."""


@dataclass(frozen=True)
class Implementation:
    """One hook function of one plugin, with the argument names it takes."""

    hook: str
    function: Any
    argnames: tuple[str, ...]
    is_async: bool


@dataclass
class LoadedPlugin:
    entry_point: str
    distribution: str
    dist_version: str
    obj: object
    declaration: Declaration
    implementations: dict[str, Implementation]
    connection_impl: Implementation | None = None
    #: What the plugin uses that a coming hook API version removes (warned at load).
    deprecations: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.declaration.name

    @property
    def hooks(self) -> list[str]:
        return sorted(self.implementations)


@dataclass(frozen=True)
class LoadError:
    entry_point: str
    distribution: str
    dist_version: str
    reason: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.dist_version} (entry point {self.entry_point!r}): {self.reason}"


@dataclass
class Registry:
    """The loaded plugins, by app plugin name, and what failed to load."""

    plugins: dict[str, LoadedPlugin] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)
    manager: pluggy.PluginManager = field(default_factory=lambda: _new_manager())

    def get(self, name: str) -> LoadedPlugin:
        try:
            return self.plugins[name]
        except KeyError:
            raise KeyError(name) from None

    def add(self, obj: object, *, entry_point: str | None = None,
            distribution: str = "(in-process)", dist_version: str = "-") -> LoadedPlugin | LoadError:
        """Validate and register one plugin object (a module or an instance)."""
        label = entry_point or str(getattr(obj, "__name__", type(obj).__name__))
        result = validate_plugin(obj, entry_point=label, distribution=distribution,
                                 dist_version=dist_version)
        if isinstance(result, LoadError):
            self.errors.append(result)
            return result
        if result.name in self.plugins:
            other = self.plugins[result.name]
            err = LoadError(label, distribution, dist_version,
                            f"declares the app name {result.name!r}, already taken by "
                            f"{other.distribution} {other.dist_version}")
            self.errors.append(err)
            return err
        self.manager.register(obj, name=f"{distribution}:{label}:{result.name}")
        self.plugins[result.name] = result
        return result

    def settings_models(self) -> dict[str, Any]:
        return {name: p.declaration.settings_model for name, p in self.plugins.items()}

    def connection(self, name: str, options: object) -> Connection | None:
        plugin = self.get(name)
        if plugin.connection_impl is None:
            return None
        result = plugin.connection_impl.function(options=options)
        if not isinstance(result, Connection):
            raise CallbridgeError(f"plugin {name!r}: connection() must return a Connection")
        return result


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _implementations(pm: pluggy.PluginManager, obj: object) -> dict[str, Implementation]:
    out = {}
    for caller in pm.get_hookcallers(obj) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin is obj:
                fn = impl.function
                out[caller.name] = Implementation(
                    caller.name, fn, tuple(impl.argnames), inspect.iscoroutinefunction(fn))
    return out


def validate_plugin(obj: object, *, entry_point: str, distribution: str,
                    dist_version: str) -> LoadedPlugin | LoadError:
    """Check one plugin in a scratch manager; return it loaded, or why not."""

    def fail(reason: str) -> LoadError:
        return LoadError(entry_point, distribution, dist_version, reason)

    unknown = _unknown_hooks(obj)
    if unknown:
        return fail("; ".join(unknown))
    pm = _new_manager()
    try:
        pm.register(obj)
        pm.check_pending()  # a hook implementation with no spec: a misspelt hook name
    except pluggy.PluginValidationError as exc:
        return fail(f"invalid hook implementation: {exc}")
    impls = _implementations(pm, obj)
    if "declare" not in impls:
        return fail("does not implement the declare() hook")
    try:
        raw = impls["declare"].function()
    except Exception as exc:  # a plugin's bug must not stop the host
        return fail(f"declare() raised {type(exc).__name__}: {exc}")
    if isinstance(raw, Mapping):
        try:
            raw = Declaration.model_validate(raw)
        except ValidationError as exc:
            return fail("invalid declaration: " + "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)))
    if not isinstance(raw, Declaration):
        return fail("declare() must return a callbridge.capabilities.Declaration")
    decl = raw
    status = api_status(decl.hook_api_version, HOOK_API_VERSION)
    if status == "refused":
        return fail(f"built for hook API {decl.hook_api_version}; this host implements "
                    f"{HOOK_API_VERSION} (same major and a minor not above the host's are accepted)")
    deprecations = _deprecations(decl, status)
    routed = {h for h in impls if h in hookspecs.ROUTED_HOOKS}
    needed = decl.required_hooks()
    missing = sorted(needed - routed)
    extra = sorted(routed - needed)
    problems = []
    if missing:
        caps = sorted(c.value for c in decl.capabilities if set(missing) & _hooks_of(c))
        problems.append(f"declares {', '.join(caps)} but does not implement {', '.join(missing)}")
    if extra:
        problems.append(f"implements {', '.join(extra)} but declares no capability that needs "
                        f"{'it' if len(extra) == 1 else 'them'}")
    if problems:
        return fail("declaration and implementation disagree: " + "; ".join(problems))
    return LoadedPlugin(
        entry_point=entry_point, distribution=distribution, dist_version=dist_version, obj=obj,
        declaration=decl,
        implementations={h: i for h, i in impls.items() if h in routed or h == "hook_called"},
        connection_impl=impls.get("connection"),
        deprecations=deprecations,
    )


def _hooks_of(cap: Capability) -> set[str]:
    return set(REQUIRED_HOOKS[cap])


def _unknown_hooks(obj: object) -> list[str]:
    """Hook implementations whose name is no hook, each with the nearest hook's name."""
    marker = f"{hookspecs.PROJECT}_impl"
    problems = []
    for attr in sorted(dir(obj)):
        try:
            value = getattr(obj, attr)
        except Exception:  # a property that raises is not a hook
            continue
        opts = getattr(value, marker, None)
        if not isinstance(opts, dict):
            continue
        name = opts.get("specname") or attr
        if name in hookspecs.ALL_HOOKS:
            continue
        near = difflib.get_close_matches(name, hookspecs.ALL_HOOKS, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else ""
        problems.append(f"implements {name}, which is not a callbridge hook{hint}")
    return problems


def _deprecations(decl: Declaration, status: str) -> tuple[str, ...]:
    """Warn once per load about what a later hook API removes."""
    found = []
    if status == "deprecated":
        found.append(f"built for hook API {decl.hook_api_version}, which this host "
                     f"({HOOK_API_VERSION}) still loads but the next major version will "
                     "refuse; see the migration guide (migrating-to-2.0)")
    if Capability.LOG_WITHOUT_CONTACT in decl.capabilities:
        found.append("declares the log_without_contact capability; declare "
                     "without_contact={'call', 'sms', 'fax'} (the kinds it can log with no "
                     "contact) instead")
    for text in found:
        message = f"plugin {decl.name!r} {text}"
        warnings.warn(message, HookApiDeprecationWarning, stacklevel=3)
        log.warning("%s", message)
    return tuple(found)


def _names(env: str) -> set[str] | None:
    raw = os.environ.get(env)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _distributions() -> dict[tuple[str, str], tuple[str, str]]:
    """Each entry point of the group (name, value) with its distribution's name and version.

    stevedore's entry points carry no distribution: they are found in importlib.metadata,
    read once for all the plugins (each reading visits every installed distribution).
    """
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        if ep.dist is not None:
            found.setdefault((ep.name, ep.value), (ep.dist.name, ep.dist.version))
        else:
            found.setdefault((ep.name, ep.value), UNKNOWN_DISTRIBUTION)
    return found


def discover(*, strict: bool | None = None, extra: Iterable[object] = ()) -> Registry:
    """Load every plugin of the entry point group (and ``extra`` in-process ones)."""
    registry = Registry()
    allow, deny = _names(ENV_ALLOW), _names(ENV_DENY) or set()
    failures: list[tuple[str, str, BaseException]] = []

    def on_failure(_mgr: Any, ep: Any, exc: BaseException) -> None:
        failures.append((ep.name, ep.value, exc))

    def wanted(name: str) -> bool:
        return (allow is None or name in allow) and name not in deny

    dists = _distributions()
    if allow is None and not deny:
        manager: ExtensionManager[Any] = ExtensionManager(
            namespace=GROUP, invoke_on_load=False, on_load_failure_callback=on_failure,
            propagate_map_exceptions=False,
        )
    else:  # a plugin left out by the lists is not imported at all
        manager = NamedExtensionManager(
            namespace=GROUP, names=sorted({name for name, _value in dists if wanted(name)}),
            invoke_on_load=False, on_load_failure_callback=on_failure,
            on_missing_entrypoints_callback=None, propagate_map_exceptions=False,
        )
    for name, value, exc in failures:
        if not wanted(name):
            continue
        dist, ver = dists.get((name, value), UNKNOWN_DISTRIBUTION)
        registry.errors.append(LoadError(name, dist, ver, f"import failed: {type(exc).__name__}: {exc}"))
    for ext in sorted(manager.extensions, key=lambda e: e.name):
        if not wanted(ext.name):
            continue
        dist, ver = dists.get((ext.name, ext.entry_point.value), UNKNOWN_DISTRIBUTION)
        registry.add(ext.plugin, entry_point=ext.name, distribution=dist, dist_version=ver)
    for obj in extra:
        registry.add(obj)
    if strict is None:
        strict = os.environ.get(ENV_STRICT, "").lower() in {"1", "true", "yes"}
    if strict and registry.errors:
        raise PluginLoadError("plugins failed to load:\n" + "\n".join(f"  - {e}" for e in registry.errors))
    return registry


